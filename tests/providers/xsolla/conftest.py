"""Xsolla tests: real fixture bodies (Xsolla's docs and its official PHP SDK), signed here with a test
key and delivered through the real webhook pipeline (tests.helpers.deliver); the subscriptions API is
the local fake in tests/fakes/xsolla.py, reached over HTTP by requests."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from billing.models import Subscription
from billing.providers.registry import get_adapter
from billing.providers.xsolla.auth import authorization_header
from billing.statuses import Status
from billing.sweeps import subscription_resync
from tests.factories import SubscriberFactory, SubscriptionFactory
from tests.fakes.xsolla import FakeXsolla
from tests.helpers import Delivered, deliver

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "xsolla"
WEBHOOK_SECRET = "xsolla-test-project-secret"
PROJECT_ID = "18404"
MERCHANT_ID = "2340"
API_KEY = "xsolla-test-api-key"

# Every fixture file, by notification type where the file name says it.
DOC_FILES = ("user_validation", "create_subscription", "update_subscription", "non_renewal_subscription")
SDK_FILES = ("payment", "refund", "partial_refund", "create_subscription", "update_subscription",
             "cancel_subscription")


def fixture_bytes(name: str) -> bytes:
    """`docs/<type>` or `sdk/<type>`: the file's exact bytes (the signature covers them)."""
    folder, _, type_ = name.partition("/")
    folder = {"docs": "docs", "sdk": "sdk_php_tests"}[folder]
    return (FIXTURES / folder / f"{type_}.json").read_bytes()


def fixture_json(name: str) -> dict:
    return json.loads(fixture_bytes(name))


def body_of(data: dict) -> bytes:
    return json.dumps(data, indent=2).encode()


def signed_headers(body: bytes, secret: str = WEBHOOK_SECRET) -> dict:
    return {"Authorization": authorization_header(body, secret), "Content-Type": "application/json"}


def send(body: bytes, *, process: bool = True) -> Delivered:
    """Deliver a body signed as Xsolla signs it (then processed, unless `process=False`)."""
    return deliver("xsolla", body, signed_headers(body), process=process)


def sub_10() -> Subscription:
    """The subscription every fixture body is about."""
    return Subscription.objects.get(provider="xsolla", provider_subscription_id="10")


@pytest.fixture
def xsolla(settings):
    """The adapter with webhooks on and the subscriptions API off."""
    settings.XSOLLA_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.XSOLLA_PROJECT_ID = ""
    settings.XSOLLA_MERCHANT_ID = ""
    settings.XSOLLA_API_KEY = ""
    return get_adapter("xsolla")


@pytest.fixture
def fake_xsolla(settings, xsolla):
    """The subscriptions API on, pointed at the local fake."""
    fake = FakeXsolla(project_id=PROJECT_ID, merchant_id=MERCHANT_ID, api_key=API_KEY).start()
    settings.XSOLLA_PROJECT_ID = PROJECT_ID
    settings.XSOLLA_MERCHANT_ID = MERCHANT_ID
    settings.XSOLLA_API_KEY = API_KEY
    settings.XSOLLA_API_BASE = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def xsolla_sub(fake_xsolla):
    nxt = (timezone.now() + timedelta(days=20)).replace(microsecond=0)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_next_charge=nxt.isoformat()))
    sub = SubscriptionFactory(provider="xsolla", provider_subscription_id="10", product=None,
                              store_product_id="b5dac9c8", subscriber=SubscriberFactory(external_id="1234567"),
                              status=Status.INACTIVE)
    subscription_resync(subscription=sub)
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE
    return sub


@pytest.fixture
def paid(fake_xsolla, xsolla_sub):
    """Xsolla's payment webhook for the subscription (the SDK's body, transaction 1: 9.99 USD of the
    subscription), delivered through the real pipeline; Pay Station holds that payment."""
    body = fixture_json("sdk/payment")
    send(body_of(body))
    payment = xsolla_sub.transactions.get(provider_transaction_id="1")
    assert (payment.amount_minor, payment.currency) == (999, "USD")
    fake_xsolla.add_payment("1", amount=9.99)
    return payment
