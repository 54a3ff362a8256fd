"""The small interface every store adapter implements, and the errors it speaks in.

An adapter is the only place that knows its store's wire format. It turns a webhook request into a
verified event, an event into snapshots, and can re-poll or verify a purchase through the store's
official client. Everything else (storing, retrying, applying) is provider-independent.

Every store package has the same files with the same roles (docs/architecture.md, "where things
live"): adapter.py (the class below and its HANDLERS table), auth.py, client.py, mapping.py,
selectors.py, admin.py, and services.py / tasks.py where the store has writes or Celery tasks of its
own. No HTTP and no admin here: the webhooks app renders a store's `dialect`, and the admin collects
each store's admin.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings

from billing.snapshots import Snapshot

if TYPE_CHECKING:
    from billing.models import Subscription


# --- Errors -----------------------------------------------------------------------------------

class ProviderError(Exception):
    """Base of the errors adapters raise."""


class NotConfigured(ProviderError):
    def __init__(self, provider: str, missing: list[str]):
        self.provider = provider
        self.missing = missing
        super().__init__(f"{provider} is not configured: set {', '.join(missing)}")


class Rejected(ProviderError):
    """An inbound request that is not authentic or not well-formed. Never processed; a retry cannot fix it."""

    def __init__(self, reason: str, *, status: int = 400, code: str = "rejected"):
        self.reason = reason
        self.status = status
        self.code = code
        super().__init__(reason)


class Undecodable(ProviderError):
    """An authentic delivery whose body cannot be decoded (not UTF-8, not JSON, nested deeper than the
    parser goes). Not a forgery: ingestion stores the bytes as received, marked failed with `reason`,
    for a replay once the code can read them."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class TransientError(ProviderError):
    """The store or a dependency failed in a way a retry may fix (5xx, 429, timeouts)."""


class StoreUnavailable(TransientError):
    """The store's API did not answer (the API answers 502)."""


class StoreRateLimited(StoreUnavailable):
    """The store answered 429: too many calls. `retry_after`: the seconds its Retry-After header asked
    for (None when it sent none). billing/store_budgets.py pauses the store's background jobs."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(ProviderError):
    """Processing can never succeed for this input (e.g. an unknown purchase token)."""


class InvalidPurchase(ProviderError):
    """A purchase sent for verification that the store does not confirm (the API answers 400)."""

    def __init__(self, reason: str, *, code: str = "invalid_purchase"):
        self.code = code
        super().__init__(reason)


class PaymentDeclined(InvalidPurchase):
    """The store declined the payment (a card refused): the payer must act (the API answers 402)."""

    def __init__(self, reason: str, *, code: str = "card_declined", decline_code: str | None = None):
        self.decline_code = decline_code
        super().__init__(reason, code=code)


class NotSupported(ProviderError):
    """The operation does not exist for this store (e.g. changing an App Store plan from a server)."""


class StoreRefused(PermanentError):
    """The store refused a request of ours and a retry cannot fix it. With a `code` (and the `param` at
    fault, when the store names one) it refused the request's content: an unknown price, a deleted
    customer, the caller's to fix (the API answers 400 with both). Without one it refused us: a revoked
    key, a missing permission, our configuration and not the caller's request (the API answers 502)."""

    def __init__(self, reason: str, *, code: str | None = None, param: str | None = None):
        self.code = code
        self.param = param
        super().__init__(reason)


class CredentialsRefused(StoreRefused):
    """The store refused our credentials or permissions (401/403: a rotated key, a permission taken
    away). Not the request's fault: the API answers it like any refusal of us (502), but webhook
    processing retries it like a transient failure, since the operator's fix makes the same call
    succeed (`retry_may_help`)."""


def retry_may_help(exc: BaseException) -> bool:
    """Whether a later attempt of the same work can succeed without changing the input: the store or a
    dependency failed (TransientError), or our configuration did (CredentialsRefused, NotConfigured: an
    operator fixes it, then the retries go through). Webhook processing retries these until its
    horizon; anything else is permanent (`failed`, waiting for a fix of the code and a replay)."""
    return isinstance(exc, TransientError | CredentialsRefused | NotConfigured)


# --- Values -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifiedEvent:
    """What authenticate() returns: an authentic event, with what ingestion needs to store it."""

    dedupe_key: str
    event_type: str
    payload: dict  # the decoded, verified content (JSON-able)
    occurred_at: datetime | None = None
    # The store's own ids in this event (subscription id, purchase token, transaction id...),
    # kept so support can search events by them.
    store_ids: tuple[str, ...] = ()
    environment: str = ""


@dataclass(frozen=True)
class InboundEvent:
    """A stored event handed back to the adapter for processing (possibly days later, on replay)."""

    id: int
    provider: str
    dedupe_key: str
    event_type: str
    payload: dict
    body: bytes
    headers: Mapping[str, str]
    received_at: datetime
    occurred_at: datetime | None = None


# --- One store read per drain group ---------------------------------------------------------------
# Events claimed together (a drain group, webhooks/processing.py) were all received before the claim, so
# a store read made while parsing any of them is as fresh as one made for each: a subscription several
# of them name is read once per group (Stripe: customer.subscription.created, invoice.paid and
# invoice.payment_succeeded of one payment arrive together). Reads of our own state are shared the same
# way: the group's snapshots are applied only after every event of it is parsed, so what its parse
# reads from the database is the same for each event. Outside a group, every read is made.
_group_reads: ContextVar[dict | None] = ContextVar("group_reads", default=None)


@contextmanager
def reads_shared_in_group() -> Iterator[None]:
    """Store reads made through `read_once_in_group` inside this block are made once per key."""
    token = _group_reads.set({})
    try:
        yield
    finally:
        _group_reads.reset(token)


def read_once_in_group(key: tuple, read: Callable[[], object]):
    """`read()`, or its result from earlier in the same group (a failed read is not kept: made again)."""
    memo = _group_reads.get()
    if memo is None:
        return read()
    if key not in memo:
        memo[key] = read()
    return memo[key]


@dataclass
class ParseResult:
    """What an event means: snapshots to apply, or why there is nothing to do."""

    snapshots: list[Snapshot] = field(default_factory=list)
    ignored_reason: str = ""
    # Follow-up work after the snapshots are applied and committed (e.g. acknowledge a purchase):
    # callables taking the list of billing.apply.ApplyResult, run outside any transaction.
    # They may raise TransientError (the event is retried; everything before is idempotent).
    after_apply: list = field(default_factory=list)
    # verify only: whether what the caller sent proves they hold the purchase (a Google purchase token, a
    # signed StoreKit transaction) or only names it (an App Store transaction id, which anyone who saw it
    # can send): then only the store's own user hint links it (billing/verification.py).
    possession_proven: bool = True


@dataclass(frozen=True)
class Answer:
    """A webhook answer as data (the webhooks app makes the HTTP response): a status and a JSON body,
    or no body at all."""

    status: int
    body: dict | None = None


class WebhookDialect:
    """How a store wants its webhook deliveries answered. This default is ours: 200
    {"status": "received" | "duplicate"}; an error keeps its status, {"error": {"code", "message"}}.
    A store whose sender reads answers its own way (Xsolla: 204, 400 with its own codes) subclasses it."""

    def success(self, *, duplicate: bool) -> Answer:
        return Answer(200, {"status": "duplicate" if duplicate else "received"})

    def error(self, *, status: int, code: str, message: str) -> Answer:
        return Answer(status, {"error": {"code": code, "message": message}})

    def stored_undecodable(self, *, reason: str) -> Answer:
        """An authentic body that could not be decoded, stored as failed: a success, so that the store
        stops retrying into a wall (the event is ours now, replayable from the stored bytes)."""
        return self.success(duplicate=False)


Handler = Callable[[InboundEvent], ParseResult]


# --- The interface ----------------------------------------------------------------------------

class ProviderAdapter:
    name: str = ""
    # Settings that must be non-empty for the provider to be on.
    required_settings: tuple[str, ...] = ()
    # Settings needed only for calling the store's API (re-poll, verify, cancel).
    api_settings: tuple[str, ...] = ()
    # How its webhooks are answered.
    dialect: ClassVar[WebhookDialect] = WebhookDialect()
    # Event type (as `handler_key` gives it) → the function that turns such an event into a ParseResult.
    HANDLERS: ClassVar[Mapping[str, Handler]] = {}

    # configuration
    def missing_settings(self, *, for_api: bool = False) -> list[str]:
        names = self.required_settings + (self.api_settings if for_api else ())
        return [n for n in names if getattr(settings, n, None) in (None, "", [])]

    def is_configured(self) -> bool:
        return not self.missing_settings()

    def ensure_configured(self, *, for_api: bool = False) -> None:
        missing = self.missing_settings(for_api=for_api)
        if missing:
            raise NotConfigured(self.name, missing)

    def checks(self) -> list:
        """System-check messages (django.core.checks) about this store's configuration, beyond the
        settings it misses (which billing/checks.py reports for every store)."""
        return []

    # inbound
    def authenticate(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
        """Verify the request and return the event, or raise Rejected. No store API call, no writes."""
        raise NotImplementedError

    def decode(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        """The stored body of an event authenticated when it arrived, decoded again (no signature: its
        timestamp may be long past): how an event stored undecoded is processed from its bytes.
        Raises Undecodable (or Rejected) when it still cannot be read."""
        raise Undecodable(f"{self.name} cannot decode a stored body again")

    def synchronous_answer(self, event: VerifiedEvent) -> Answer | None:
        """An answer the store needs right away (e.g. Xsolla's user validation), or None to store and queue."""
        return None

    def parse(self, event: InboundEvent) -> ParseResult:
        """Turn a stored event into snapshots through its HANDLERS entry. May call the store's API (raise
        TransientError to retry)."""
        handler = self.HANDLERS.get(self.handler_key(event))
        return handler(event) if handler is not None else self.unhandled(event)

    def unhandled(self, event: InboundEvent) -> ParseResult:
        """An authentic event no HANDLERS entry takes: recorded as ignored, with the reason."""
        return ParseResult(ignored_reason=f"{event.event_type} does not change subscription state")

    def while_failing(self, event: InboundEvent, error: BaseException | None, *, final: bool) -> str:
        """Called after a failed processing attempt of a stored event (`error`: why), outside any
        transaction: what the store's own deadline needs even though processing has not succeeded
        (Google: acknowledge a new purchase from its notification before Google refunds it). `final`: no
        further attempt is planned. Returns what was done ("": nothing yet; asked again next failure)."""
        return ""

    def handler_key(self, event: InboundEvent) -> str:
        """Which HANDLERS entry an event goes to (its stored type, unless the store needs another key)."""
        return event.event_type

    def missed_notifications(self, *, since: datetime, until: datetime, only_failures: bool,
                             environment: str) -> Iterator[bytes | None]:
        """The store's own record of what it sent us (its notification history), each as the webhook
        body it POSTed (None for an entry without one), oldest first, for ingesting what we missed.
        Raises StoreUnavailable, PermanentError or NotConfigured when the history cannot be read."""
        raise NotSupported(f"{self.name} keeps no notification history we can read")

    # outbound
    def fetch(self, subscription: Subscription) -> Snapshot:
        """Re-poll: the subscription's current state at the store."""
        raise NotSupported(f"{self.name} has no re-poll")

    def verify(self, purchase: Mapping, *, user_id: str | None) -> ParseResult:
        """Verify a purchase sent by an app (the request body), server to server: the store's state as
        snapshots (the caller links them to `user_id`, checks ownership and applies them, then runs
        `after_apply`). Raise InvalidPurchase (400) or StoreUnavailable (502)."""
        raise NotSupported(f"{self.name} purchases are not verified through this API")

    def cancel(self, subscription: Subscription) -> Snapshot | None:
        """Stop renewal at period end through the store. Returns the new state if the store tells it."""
        raise NotSupported(f"{self.name} subscriptions cannot be canceled from here")

    def change_plan(self, subscription: Subscription, *, price_id: str) -> Snapshot | None:
        raise NotSupported(f"{self.name} subscriptions cannot change plan from here")
