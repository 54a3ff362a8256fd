"""Only what is offered can be bought, and Stripe sends buyers back only to our own hosts: subscribe,
Checkout and change-plan refuse a price that is not on sale (400 price_not_offered, nothing sent to
Stripe); Checkout and the portal refuse return URLs on foreign hosts (400 return_url_not_allowed). Staff
put prices on sale in the admin; STRIPE_OFFERED_PRICES lists more. With the real stripe library against
the fake."""

import pytest
from django.urls import reverse

from accounts.models import Subscriber
from billing.models import Product, Subscription
from billing.providers.stripe.mapping import parse_price
from billing.providers.stripe.services import customer_idempotency_key, product_upsert_from_price
from billing.selectors import check_answer
from tests.api_support import bearer, configure_jwt
from tests.factories import UserFactory

from .conftest import offer

pytestmark = pytest.mark.django_db

OK_URLS = {"success_url": "https://app.example.com/ok?session={CHECKOUT_SESSION_ID}",
           "cancel_url": "https://app.example.com/cancel"}


@pytest.fixture(autouse=True)
def _auth(settings):
    configure_jwt(settings)
    settings.STRIPE_RETURN_URL_ALLOWED_HOSTS = ["app.example.com"]
    settings.STRIPE_OFFERED_PRICES = []


@pytest.fixture
def catalogue(fake_stripe):
    """Premium at 9.99 on sale; a legacy 0.01 price of the same product, synced (and granting the same
    entitlements), never put on sale."""
    product = fake_stripe.add_product("Premium")
    premium = fake_stripe.add_price(product, unit_amount=999, interval="month")
    legacy = fake_stripe.add_price(product, unit_amount=1, interval="month")
    offer(premium)
    product_upsert_from_price(price=parse_price(legacy))  # synced, as a price.created event does
    return {"premium": premium, "legacy": legacy}


def subscribe(client, price_id: str, user_id: str = "42"):
    return client.post("/api/stripe/subscriptions", {"price_id": price_id, "payment_method_id": "pm_card_visa"},
                       content_type="application/json", **bearer(user_id))


def checkout(client, price_id: str, **urls):
    return client.post("/api/stripe/checkout-sessions", {"price_id": price_id, **OK_URLS, **urls},
                       content_type="application/json", **bearer("42"))


def assert_not_offered(response, price_id: str):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "price_not_offered" and price_id in error["message"]
    assert error["details"] == {"price_id": price_id}


# --- Offered prices ------------------------------------------------------------------------------

def test_a_synced_price_not_on_sale_is_refused_and_nothing_reaches_stripe(client, fake_stripe, catalogue):
    legacy = catalogue["legacy"]["id"]
    assert Product.objects.get(store_product_id=legacy).offered is False  # synced, not on sale

    assert_not_offered(subscribe(client, legacy), legacy)
    assert_not_offered(checkout(client, legacy), legacy)
    assert fake_stripe.requests == []  # not even a customer created
    assert not Subscriber.objects.exists() and check_answer("42")["is_subscribed"] is False


def test_an_unknown_price_is_refused_before_stripe(client, fake_stripe, catalogue):
    assert_not_offered(subscribe(client, "price_never_heard_of"), "price_never_heard_of")
    assert fake_stripe.requests == []


def test_an_offered_price_can_be_bought(client, fake_stripe, catalogue):
    response = subscribe(client, catalogue["premium"]["id"])
    assert response.status_code == 201, response.content
    assert response.json()["subscription"]["status"] == "ACTIVE"
    assert checkout(client, catalogue["premium"]["id"]).status_code == 200


def test_a_price_listed_in_the_setting_can_be_bought(client, fake_stripe, catalogue, settings):
    settings.STRIPE_OFFERED_PRICES = [catalogue["legacy"]["id"]]
    assert subscribe(client, catalogue["legacy"]["id"]).status_code == 201
    assert checkout(client, catalogue["legacy"]["id"]).status_code == 200


def test_change_plan_only_to_an_offered_price(client, fake_stripe, catalogue):
    sub = subscribe(client, catalogue["premium"]["id"]).json()["subscription"]
    sent = len(fake_stripe.requests)
    response = client.post(f"/api/subscriptions/{sub['id']}/change-plan", {"price_id": catalogue["legacy"]["id"]},
                           content_type="application/json", **bearer("42"))
    assert_not_offered(response, catalogue["legacy"]["id"])
    assert len(fake_stripe.requests) == sent  # Stripe was not asked anything
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.store_product_id, row.amount_minor) == (catalogue["premium"]["id"], 999)
    stripe_sub = fake_stripe.objects[sub["provider_subscription_id"]]
    assert stripe_sub["items"]["data"][0]["price"]["id"] == catalogue["premium"]["id"]


def test_staff_put_a_price_on_sale_and_withdraw_it_in_the_admin(client, fake_stripe, catalogue):
    legacy = Product.objects.get(store_product_id=catalogue["legacy"]["id"])
    apple = Product.objects.create(provider="apple", store_product_id="com.example.premium")
    staff = UserFactory(username="catalogue-staff")
    client.force_login(staff)
    changelist = reverse("admin:billing_product_changelist")
    response = client.post(changelist, {"action": "mark_offered", "_selected_action": [legacy.pk, apple.pk]},
                           follow=True)
    notes = [str(m) for m in response.context["messages"]]
    assert "1 Stripe price(s) on sale." in notes and any("other stores" in n for n in notes)
    legacy.refresh_from_db()
    apple.refresh_from_db()
    assert legacy.offered is True and legacy.offered_changed_by == staff and legacy.offered_changed_at
    assert apple.offered is False
    client.logout()
    assert subscribe(client, legacy.store_product_id).status_code == 201

    client.force_login(staff)
    client.post(changelist, {"action": "withdraw_offer", "_selected_action": [legacy.pk]})
    client.logout()
    assert_not_offered(subscribe(client, legacy.store_product_id, user_id="43"), legacy.store_product_id)


def test_the_product_form_records_who_put_it_on_sale_and_refuses_other_stores(client, fake_stripe, catalogue):
    staff = UserFactory(username="catalogue-editor")
    client.force_login(staff)
    legacy = Product.objects.get(store_product_id=catalogue["legacy"]["id"])
    form = {"provider": "stripe", "store_product_id": legacy.store_product_id, "label": "Legacy",
            "period_unit": "month", "period_value": 1, "price_minor": 1, "currency": "USD", "offered": "on"}
    response = client.post(reverse("admin:billing_product_change", args=[legacy.pk]), form)
    assert response.status_code == 302
    legacy.refresh_from_db()
    assert legacy.offered and legacy.offered_changed_by == staff

    response = client.post(reverse("admin:billing_product_add"), {**form, "provider": "google",
                                                                  "store_product_id": "premium_monthly"})
    assert response.status_code == 200 and "Only Stripe prices are sold here" in response.content.decode()
    assert not Product.objects.filter(provider="google").exists()


# --- Return URLs ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "url"), [
    ("success_url", "https://evil.example.net/ok"),
    ("cancel_url", "https://app.example.com.evil.example.net/cancel"),  # a lookalike suffix
    ("success_url", "https://app.example.com@evil.example.net/ok"),  # user info: the host is evil
    ("success_url", "https://evil.example.net\\@app.example.com/ok"),  # browsers read the host as evil
    ("cancel_url", "ftp://app.example.com/cancel"),
])
def test_checkout_refuses_a_foreign_return_url_and_sends_nothing(client, fake_stripe, catalogue, field, url):
    response = checkout(client, catalogue["premium"]["id"], **{field: url})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] in ("return_url_not_allowed", "invalid")  # ftp:// is no URL to the serializer
    if error["code"] == "return_url_not_allowed":
        assert error["details"] == {"field": field} and field in error["message"]
    assert fake_stripe.requests == []


def test_portal_refuses_a_foreign_return_url(client, fake_stripe, catalogue):
    client.post("/api/stripe/setup-intents", {}, content_type="application/json", **bearer("42"))
    sent = len(fake_stripe.requests)
    response = client.post("/api/stripe/portal-sessions", {"return_url": "https://evil.example.net/account"},
                           content_type="application/json", **bearer("42"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "return_url_not_allowed"
    assert "evil.example.net" in response.json()["error"]["message"]
    assert len(fake_stripe.requests) == sent
    ours = client.post("/api/stripe/portal-sessions", {"return_url": "https://APP.example.com./account"},
                       content_type="application/json", **bearer("42"))
    assert ours.status_code == 200  # host names compare case-insensitively, with or without the final dot


def test_a_leading_dot_allows_the_domain_and_its_subdomains(client, fake_stripe, catalogue, settings):
    settings.STRIPE_RETURN_URL_ALLOWED_HOSTS = [".example.org"]
    price = catalogue["premium"]["id"]
    assert checkout(client, price, success_url="https://shop.example.org/ok",
                    cancel_url="https://example.org/c").status_code == 200
    assert checkout(client, price, success_url="https://example.org.evil.example.net/ok").status_code == 400


def test_without_the_setting_the_allowed_hosts_apply_but_never_a_wildcard(client, fake_stripe, catalogue, settings):
    settings.STRIPE_RETURN_URL_ALLOWED_HOSTS = []
    settings.ALLOWED_HOSTS = ["*", "billing.example.com", "testserver"]
    price = catalogue["premium"]["id"]
    ok = checkout(client, price, success_url="https://billing.example.com/ok",
                  cancel_url="https://billing.example.com/cancel")
    assert ok.status_code == 200, ok.content
    refused = checkout(client, price, success_url="https://evil.example.net/ok",
                       cancel_url="https://billing.example.com/cancel")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "return_url_not_allowed"


# --- Any user id ---------------------------------------------------------------------------------

@pytest.mark.parametrize("user_id", ["Ünïcödé-ユーザー", "🙂" * 100])
def test_a_user_id_that_is_not_latin1_subscribes(client, fake_stripe, catalogue, service_auth, user_id):
    response = client.post("/api/stripe/subscriptions", {"user_id": user_id, "price_id": catalogue["premium"]["id"],
                                                         "payment_method_id": "pm_card_visa"},
                           content_type="application/json", **service_auth("manage"))
    assert response.status_code == 201, response.content
    assert response.json()["subscription"]["user_id"] == user_id
    customers = [o for o in fake_stripe.objects.values() if o["object"] == "customer"]
    assert [c["metadata"] for c in customers] == [{"user_id": user_id}]
    assert check_answer(user_id)["is_subscribed"] is True
    key = customer_idempotency_key(user_id)
    assert key.isascii() and len(key) <= 255  # an HTTP header value Stripe accepts
