"""Helpers of the Apple tests."""

import json
from pathlib import Path

from billing.apply import apply_snapshot
from billing.models import Subscription
from billing.providers.apple.adapter import AppleAdapter
from billing.providers.base import InboundEvent
from billing.snapshots import Cause, CauseKind

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "apple"
REAL_BUNDLE_ID = "com.loki-project.loki-messenger"
REAL_ORIGINAL_TRANSACTION_ID = "2000001024993299"


def real_body(name: str) -> bytes:
    return (FIXTURES / "signed_real_sandbox" / name).read_bytes()


def real_sequence(prefix: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((FIXTURES / "signed_real_sandbox").glob(f"{prefix}_*.json"))]


_event_ids = iter(range(1, 10**9))


def process(adapter: AppleAdapter, body: bytes):
    """The pipeline's steps for one webhook, in-process: authenticate → parse → apply_snapshot.
    Returns (parse result, apply results)."""
    verified = adapter.authenticate({}, body, {})
    event = InboundEvent(id=next(_event_ids), provider="apple", dedupe_key=verified.dedupe_key,
                         event_type=verified.event_type, payload=json.loads(json.dumps(verified.payload)),
                         body=body, headers={}, received_at=verified.occurred_at, occurred_at=verified.occurred_at)
    parsed = adapter.parse(event)
    results = [apply_snapshot(s, Cause(CauseKind.WEBHOOK, ref=str(event.id))) for s in parsed.snapshots]
    return parsed, results


def subscription(original_transaction_id: str) -> Subscription:
    return Subscription.objects.get(provider="apple", provider_subscription_id=original_transaction_id)
