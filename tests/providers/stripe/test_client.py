"""client.py: the calls to Stripe (the real stripe library against the fake) and their errors as ours:
unreachable / 5xx / 429 / 409 → StoreUnavailable, a card declined → PaymentDeclined, a read of
something Stripe does not have → SubscriptionNotFound, any other refusal → StoreRefused."""

import json

import pytest

from billing.providers.base import NotConfigured, PaymentDeclined, StoreRefused, StoreUnavailable
from billing.providers.common import SubscriptionNotFound
from billing.providers.stripe import client
from tests.helpers import closed_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscription(fake_stripe, monthly):
    customer = fake_stripe.customer_create({"email": "a@example.com"})
    return fake_stripe.start_subscription(customer, monthly, payment_method="pm_card_visa")


def test_subscription_get_is_plain_data_with_the_price_and_product_expanded(fake_stripe, subscription):
    sub = client.subscription_get(subscription["id"])
    assert type(sub) is dict and json.loads(json.dumps(sub)) == sub  # JSON-able, as a webhook body
    price = sub["items"]["data"][0]["price"]
    assert price["product"]["name"] == "Premium"  # expanded: the product names the catalogue entry
    assert fake_stripe.requests[-1][:2] == ("GET", f"/v1/subscriptions/{subscription['id']}")


def test_the_webhook_read_brings_the_latest_invoice_with_its_payments_in_the_same_request(
        fake_stripe, subscription):
    before = len(fake_stripe.requests)
    sub, latest = client.subscription_get_with_latest_invoice(subscription["id"])
    assert len(fake_stripe.requests) == before + 1
    # The subscription as subscription_get gives it (the latest invoice an id), its invoice beside it.
    assert sub == client.subscription_get(subscription["id"])
    assert latest["id"] == sub["latest_invoice"] == subscription["latest_invoice"]
    [payment] = latest["payments"]["data"]
    assert payment["status"] == "paid" and payment["payment"]["payment_intent"].startswith("pi_")
    # Stripe includes an invoice's payments only when they are expanded.
    assert "payments" not in client.invoice_get(latest["id"])


def test_a_subscription_stripe_does_not_have_is_subscription_not_found(fake_stripe):
    with pytest.raises(SubscriptionNotFound, match="Stripe has no subscription sub_nope") as raised:
        client.subscription_get("sub_nope")
    assert raised.value.status == 404
    with pytest.raises(SubscriptionNotFound):
        client.subscription_update("sub_nope", {"cancel_at_period_end": True})


@pytest.mark.parametrize("status", [500, 503, 429, 409])
def test_stripe_failing_is_store_unavailable(fake_stripe, subscription, status):
    fake_stripe.fail(r"GET /v1/subscriptions/", status=status)
    with pytest.raises(StoreUnavailable, match="Stripe did not answer"):
        client.subscription_get(subscription["id"])
    assert client.subscription_get(subscription["id"])["id"] == subscription["id"]  # once it answers


def test_stripe_unreachable_is_store_unavailable(fake_stripe, settings):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port()}"  # nothing listens there
    with pytest.raises(StoreUnavailable, match="Stripe did not answer"):
        client.invoice_get("in_1")


def test_the_proxy_settings_of_the_environment_are_honoured(fake_stripe, subscription, settings, monkeypatch):
    """Read once, when the client for a key and base is made (not on every call), as requests reads them."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")  # a proxy that does not answer
    settings.STRIPE_SECRET_KEY = "sk_test_" + "proxied" * 4
    with pytest.raises(StoreUnavailable, match="Stripe did not answer"):
        client.subscription_get(subscription["id"])
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the API base's host goes direct
    settings.STRIPE_SECRET_KEY = "sk_test_" + "direct" * 5
    assert client.subscription_get(subscription["id"])["id"] == subscription["id"]


def test_a_declined_card_is_payment_declined_with_stripes_codes(fake_stripe):
    customer = fake_stripe.customer_create({})
    with pytest.raises(PaymentDeclined) as raised:
        client.payment_method_attach("pm_card_chargeDeclined", customer=customer["id"])
    error = raised.value
    assert (str(error), error.code, error.decline_code) == ("Your card was declined.", "card_declined",
                                                            "generic_decline")


def test_a_refused_request_is_store_refused_with_stripes_code_and_param(fake_stripe):
    customer = fake_stripe.customer_create({})
    with pytest.raises(StoreRefused) as raised:
        client.subscription_create({"customer": customer["id"], "items": [{"price": "price_nope"}]})
    error = raised.value
    assert (str(error), error.code, error.param) == ("No such price: 'price_nope'", "resource_missing",
                                                     "items[0][price]")


def test_a_404_of_a_call_that_is_not_a_read_is_a_refusal(fake_stripe):
    """A payment method Stripe does not have is the caller's mistake, with Stripe's code: not a missing
    subscription."""
    customer = fake_stripe.customer_create({})
    with pytest.raises(StoreRefused) as raised:
        client.payment_method_attach("card_nope", customer=customer["id"])
    assert (raised.value.code, raised.value.param) == ("resource_missing", None)


def test_a_key_stripe_refuses_is_store_refused_without_a_code(fake_stripe, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_revoked"
    with pytest.raises(StoreRefused, match=r"^Stripe refused the request: ") as raised:
        client.price_get("price_1")
    assert raised.value.code is None


def test_without_the_secret_key_nothing_is_asked(fake_stripe, settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(NotConfigured, match="STRIPE_SECRET_KEY"):
        client.subscription_get("sub_1")
    assert fake_stripe.requests == []


def test_listing_every_subscription_follows_the_pages(fake_stripe, monthly):
    for _ in range(5):
        fake_stripe.start_subscription(fake_stripe.customer_create({}), monthly, payment_method="pm_card_visa")
    fake_stripe.set_status(next(o for o in fake_stripe.objects.values() if o["object"] == "subscription")["id"],
                           "canceled")
    subs = list(client.subscriptions_list_all(page_size=2))
    assert len(subs) == 5 and all(type(s) is dict for s in subs)  # canceled ones too (status=all)
    listed = [p for m, path, p in fake_stripe.requests if (m, path) == ("GET", "/v1/subscriptions")]
    assert len(listed) == 3 and all(p["status"] == "all" and p["limit"] == "2" for p in listed)


def test_prices_come_as_plain_data_with_decimal_fields_as_text(fake_stripe, monthly):
    price = client.price_get(monthly["id"])
    assert price["unit_amount_decimal"] == "999" and price["product"]["name"] == "Premium"
    assert [p["id"] for p in client.prices_list(product=monthly["product"])["data"]] == [monthly["id"]]
