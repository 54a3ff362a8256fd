"""An adapter that exists only in tests (and the ingestion bench): HMAC-signed JSON events
`{"id", "type", "subscription_id", "user_id", "status", "time"}`.

Registered in tests/settings.py (BILLING_PROVIDERS), which the test process and the workers and
servers a test starts all use. Some event types misbehave on purpose; their state lives in Redis so
that it is shared with the worker processes."""

import hashlib
import hmac
import json
import time
from datetime import datetime

from billing.providers.base import (
    Answer,
    InboundEvent,
    ParseResult,
    PermanentError,
    ProviderAdapter,
    Rejected,
    TransientError,
    VerifiedEvent,
)
from billing.redis_client import get_redis
from billing.snapshots import Provider, Snapshot

NAME = "hooktest"
SECRET = b"hooktest-signing-secret"
SIGNATURE_HEADER = "X-Hooktest-Signature"
BROKEN_KEY = "hooktest:dependency-broken"  # set: "needs_fix" events fail transiently


def sign(body: bytes) -> str:
    return hmac.new(SECRET, body, hashlib.sha256).hexdigest()


def event_body(event_id: str, *, type: str = "status", subscription_id: str = "sub_1", user_id: str | None = "42",
               status: str = "ACTIVE", time: str = "2026-11-01T10:00:00+00:00", **extra) -> bytes:
    data = {"id": event_id, "type": type, "subscription_id": subscription_id, "user_id": user_id,
            "status": status, "time": time, **extra}
    return json.dumps(data).encode()


class HookTestAdapter(ProviderAdapter):
    name = NAME

    def authenticate(self, headers, body, query) -> VerifiedEvent:
        signature = headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise Rejected(f"missing {SIGNATURE_HEADER} header", status=401, code="unsigned")
        if not hmac.compare_digest(signature, sign(body)):
            raise Rejected("signature does not match the body", code="bad_signature")
        try:
            data = json.loads(body)
            event_id, event_type = str(data["id"]), str(data["type"])
            occurred_at = datetime.fromisoformat(data["time"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Rejected(f"malformed event: {exc}", code="malformed") from exc
        return VerifiedEvent(dedupe_key=event_id, event_type=event_type, payload=data, occurred_at=occurred_at,
                             store_ids=(event_id, str(data.get("subscription_id") or "")))

    def synchronous_answer(self, event: VerifiedEvent):
        if event.event_type == "ping":
            return Answer(204)
        return None

    def parse(self, event: InboundEvent) -> ParseResult:
        data = event.payload
        redis = get_redis()
        kind = event.event_type
        if kind == "test":
            return ParseResult(ignored_reason="test notification")
        if kind == "permanent":
            raise PermanentError("the store says this purchase does not exist")
        # "flaky" fails `fail_times` times, then succeeds
        if kind == "flaky" and redis.incr(f"hooktest:flaky:{event.dedupe_key}") <= int(data["fail_times"]):
            raise TransientError("store answered 503")
        if kind == "needs_fix" and redis.exists(BROKEN_KEY):
            raise TransientError("dependency down")
        if kind == "sleep" and redis.set(f"hooktest:slept:{event.dedupe_key}", "1", nx=True):
            redis.set(f"hooktest:sleeping:{event.dedupe_key}", "1")
            time.sleep(float(data["seconds"]))  # the first attempt only: the test kills the worker here
        after_apply = []
        if kind == "follow_up":  # e.g. acknowledging a purchase at the store, after the state is committed
            after_apply.append(lambda results: self._follow_up(event, int(data["fail_times"]), results))
        return ParseResult(after_apply=after_apply, snapshots=[Snapshot(
            provider=Provider.MANUAL, provider_subscription_id=data["subscription_id"], status=data["status"],
            observed_at=event.occurred_at, user_id=data.get("user_id"), store_product_id="hooktest_monthly")])

    def _follow_up(self, event: InboundEvent, fail_times: int, results) -> None:
        redis = get_redis()
        if redis.incr(f"hooktest:follow-up:{event.dedupe_key}") <= fail_times:
            raise TransientError("acknowledgement endpoint answered 503")
        redis.set(f"hooktest:acknowledged:{event.dedupe_key}", ",".join(r.new_status for r in results))
