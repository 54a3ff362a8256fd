"""Bodies as received: what PostgreSQL can store of an authentic event, and how an event stored
without its decoded content is decoded again from its bytes.

The bytes are always stored (a BinaryField takes anything). The decoded content goes into text and
jsonb columns, which refuse a NUL character (\\u0000), a lone surrogate (\\ud800: not Unicode, it cannot
be encoded as UTF-8), NaN and Infinity; and a payload nested deeper than any store sends is not worth
the database's stack. Such an event is stored with an empty payload and the reason (`payload_problem`),
marked failed, and decoded from the stored bytes when it is replayed (`inbound_event`)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from itertools import accumulate

from billing.providers import registry
from billing.providers.base import InboundEvent, VerifiedEvent
from billing.storable import json_problem, text_problem

# Deeper than any store's payload (Stripe's events nest about 10 levels), far below what psycopg's
# JSON encoder and PostgreSQL's stack take.
MAX_PAYLOAD_DEPTH = 64


def body_key(body: bytes) -> str:
    """The dedupe key of an event whose own id cannot be read or stored: its bytes' digest, so a
    redelivery of the same bytes is a duplicate."""
    return f"body:sha256:{hashlib.sha256(body).hexdigest()}"


def escaped(value: str) -> str:
    """The text with a NUL and lone surrogates as their JSON escapes: storable, and shown as sent."""
    return value.replace("\x00", "\\u0000").encode("utf-8", errors="backslashreplace").decode("utf-8")


def storable(verified: VerifiedEvent, body: bytes) -> tuple[VerifiedEvent, str]:
    """The event as it can be stored, and the problem ("" when it can be stored whole). With a
    problem, the payload is left out (the bytes keep it) and each text field is kept only if storable
    (the store's event id still dedupes redeliveries; else the body's digest does)."""
    problem = payload_problem(verified.payload)
    texts = (verified.dedupe_key, verified.event_type, verified.environment, *verified.store_ids)
    problem = problem or next((p for p in map(text_problem, texts) if p), "")
    if not problem:
        return verified, ""
    key = verified.dedupe_key if verified.dedupe_key and not text_problem(verified.dedupe_key) else body_key(body)
    return VerifiedEvent(
        dedupe_key=key,
        event_type="" if text_problem(verified.event_type) else verified.event_type,
        payload={},
        occurred_at=verified.occurred_at,
        store_ids=tuple(i for i in verified.store_ids if not text_problem(str(i))),
        environment="" if text_problem(verified.environment) else verified.environment,
    ), f"The decoded body cannot be stored: {problem}."


def payload_problem(payload) -> str:
    """json_problem's verdict, found by the C JSON encoder for the payloads that have none (all of a
    store's, nearly): json_problem walks every value in Python, which cost a Stripe event ~10% of its
    answer's CPU. The encoder escapes a NUL as \\u0000, keeps a lone surrogate (UTF-8 refuses it) and
    refuses NaN; nesting is bounded by counting brackets. Any doubt (a NUL, a surrogate, NaN, brackets
    nested near the limit, or a value the encoder cannot take) is settled by json_problem itself."""
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return json_problem(payload, max_depth=MAX_PAYLOAD_DEPTH)
    if "\\u0000" in text or _nesting(text) >= MAX_PAYLOAD_DEPTH:
        return json_problem(payload, max_depth=MAX_PAYLOAD_DEPTH)
    return ""


_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nesting(text: str) -> int:
    """How deep the arrays and objects of a compact JSON text (json.dumps's) nest; 0 for a scalar."""
    if text.count("{") + text.count("[") < MAX_PAYLOAD_DEPTH:
        return 0  # fewer containers than the limit cannot nest to it
    # Outside the strings only: without their escaped backslashes and quotes, every other quote opens
    # or closes a string. Then the running sum of the brackets, in C (accumulate, map).
    unquoted = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(unquoted.split('"')[::2])
    return max(accumulate(map(_STEP.__getitem__, _BRACKET.findall(outside))), default=0)


def headers_storable(headers: dict) -> dict:
    """The headers, a value PostgreSQL cannot store replaced by why (the body is what matters)."""
    kept = {}
    for key, value in headers.items():
        problem = text_problem(str(value))
        if not text_problem(key):
            kept[key] = f"(not stored: {problem})" if problem else value
    return kept


def inbound_event(event) -> InboundEvent:
    """A stored WebhookEvent as its adapter processes it. An event stored without its decoded content
    (`payload_problem`) is decoded again from the stored bytes, with the code running now: a replay
    after a fix processes what the store sent. Raises (Undecodable, …) when it still cannot be read:
    processing records the event as failed with the reason."""
    inbound = InboundEvent(id=event.pk, provider=event.provider, dedupe_key=event.dedupe_key,
                           event_type=event.event_type, payload=event.payload, body=bytes(event.body),
                           headers=event.headers or {}, received_at=event.received_at,
                           occurred_at=event.occurred_at)
    if not event.payload_problem:
        return inbound
    decoded = registry.get_adapter(event.provider).decode(inbound.body, inbound.headers)
    # The type finds the handler and is echoed in outcomes: kept storable (a hostile one has no handler).
    return replace(inbound, event_type=escaped(decoded.event_type), payload=decoded.payload,
                   occurred_at=decoded.occurred_at or event.occurred_at)
