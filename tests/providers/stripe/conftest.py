"""Stripe tests run the real stripe library (and dj-stripe) against the local fake in tests/fakes/stripe.py."""

import json
from pathlib import Path

import pytest
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.providers.base import InboundEvent
from billing.providers.registry import get_adapter
from billing.snapshots import Cause, CauseKind
from tests.fakes.stripe import FakeStripe, sign

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"
SECRET_KEY = "sk_test_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3"
WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
def fake_stripe(settings):
    fake = FakeStripe().start()
    settings.STRIPE_API_BASE = fake.url
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    yield fake
    fake.stop()


@pytest.fixture
def stripe_adapter():
    return get_adapter("stripe")


def event_body(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def signed_headers(body: bytes, *, timestamp: int | None = None, secret: str = WEBHOOK_SECRET) -> dict:
    return {"Stripe-Signature": sign(body, secret, timestamp), "Content-Type": "application/json"}


def fixture_event(name: str) -> bytes:
    """A real event body (stripe-ruby-mock, API 2020-08-27), byte for byte."""
    return (FIXTURES / "webhook_events" / f"{name}.json").read_bytes()


class Processed:
    def __init__(self, parsed, results):
        self.parsed = parsed
        self.results = results


def process(adapter, body: bytes, headers: dict | None = None) -> Processed:
    """What the webhook pipeline does with one delivery: authenticate, store (here: keep), parse,
    apply each snapshot through the one write path, then run the follow-ups."""
    headers = headers if headers is not None else signed_headers(body)
    verified = adapter.authenticate(headers, body, {})
    inbound = InboundEvent(id=1, provider="stripe", dedupe_key=verified.dedupe_key, event_type=verified.event_type,
                           payload=verified.payload, body=body, headers=headers, received_at=timezone.now(),
                           occurred_at=verified.occurred_at)
    parsed = adapter.parse(inbound)
    results = [apply_snapshot(s, Cause(CauseKind.WEBHOOK, ref=verified.dedupe_key)) for s in parsed.snapshots]
    for follow_up in parsed.after_apply:
        follow_up(results)
    return Processed(parsed, results)


def process_all(adapter, events: list[dict]) -> list[Processed]:
    return [process(adapter, event_body(e)) for e in events]
