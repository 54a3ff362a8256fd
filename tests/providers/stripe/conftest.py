"""Stripe tests run the real stripe library (and dj-stripe) against the local fake in tests/fakes/stripe.py;
events go through the real webhook pipeline (tests.helpers.deliver), signed as Stripe signs them."""

import json
from pathlib import Path

import pytest
from django.utils import timezone

from billing.models import Product
from billing.providers.registry import get_adapter
from billing.providers.stripe.mapping import parse_price
from billing.providers.stripe.services import product_upsert_from_price
from tests.fakes.stripe import FakeStripe, sign
from tests.helpers import Delivered, deliver, drain
from webhooks.models import WebhookEvent

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


@pytest.fixture
def monthly(fake_stripe):
    product = fake_stripe.add_product("Premium")
    return fake_stripe.add_price(product, unit_amount=999, currency="usd", interval="month")


def offer(price: dict) -> Product:
    """The price synced into the catalogue (as an event or the backfill does) and put on sale by staff."""
    product = product_upsert_from_price(price=parse_price(price))
    Product.objects.filter(pk=product.pk).update(offered=True)
    return product


def event_body(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def signed_headers(body: bytes, *, timestamp: int | None = None, secret: str = WEBHOOK_SECRET) -> dict:
    return {"Stripe-Signature": sign(body, secret, timestamp), "Content-Type": "application/json"}


def fixture_event(name: str) -> bytes:
    """A real event body (stripe-ruby-mock, API 2020-08-27), byte for byte."""
    return (FIXTURES / "webhook_events" / f"{name}.json").read_bytes()


def deliver_body(body: bytes, *, process: bool = True) -> Delivered:
    """A body POSTed to /webhooks/stripe with a valid signature, then processed by the real pipeline."""
    return deliver("stripe", body, signed_headers(body), process=process)


def deliver_event(event: dict, *, process: bool = True) -> Delivered:
    """One event of the fake (`fake_stripe.take_events()`), as Stripe delivers it."""
    return deliver_body(event_body(event), process=process)


def deliver_events(events: list[dict]) -> list[Delivered]:
    """Events delivered and processed one after the other, in order."""
    return [deliver_event(e) for e in events]


def retry_now(delivered: Delivered) -> WebhookEvent:
    """The event's planned retry falls due (as time passes) and the worker drains; the event afterwards."""
    WebhookEvent.objects.filter(pk=delivered.event.pk).update(next_attempt_at=timezone.now())
    drain()
    delivered.event.refresh_from_db()
    return delivered.event
