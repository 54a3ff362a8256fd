"""What every log line of the current request or task carries: the request id, the Celery task id and,
where the pipeline knows them, the webhook event, subscription and user ids.

A contextvar, so it follows the code that runs for one request or task (threads and asyncio tasks each
see their own) and costs one dict copy per `log_context` block. `operations.logging.ContextFilter`
copies it onto every record; the JSON formatter writes each field at the top level of the line."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

# The field names a line may carry (docs/operations.md "Logs"); others are refused so that a typo does
# not silently create a field nobody searches for.
FIELDS = ("request_id", "task_id", "task_name", "event_id", "subscription_id", "user_id")

_context: ContextVar[dict[str, object]] = ContextVar("billing_log_context", default={})  # noqa: B039 (never mutated)


def current() -> dict[str, object]:
    """The fields of the current context (never mutate it)."""
    return _context.get()


def bind(**fields) -> Token:
    """Add fields (None values are left out) until `unbind(token)`; `log_context` is the usual form."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(token: Token) -> None:
    try:
        _context.reset(token)
    except ValueError:  # set in another context (a signal pair split across contexts): start afresh
        _context.set({})


def clear() -> None:
    """Start afresh: a request's fields must not reach the next request's lines (same thread)."""
    _context.set({})


@contextmanager
def log_context(**fields) -> Iterator[None]:
    """`with log_context(event_id=event.pk): ...`: the lines logged inside carry these fields."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)
