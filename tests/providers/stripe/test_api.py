"""The web-subscription API (/api/stripe/...) and the generic cancel / change-plan endpoints for a
Stripe subscription, with the real stripe library against the fake."""

import pytest
import stripe
from drf_spectacular.drainage import GENERATOR_STATS, reset_generator_stats
from drf_spectacular.generators import SchemaGenerator

from accounts.models import Subscriber
from audit.models import AuditEntry
from billing.models import Subscription
from billing.selectors import check_answer
from billing.statuses import Status
from tests.api_support import bearer, configure_jwt
from tests.helpers import closed_port

from .conftest import SECRET_KEY, deliver_events, offer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _jwt(settings):
    configure_jwt(settings)


@pytest.fixture
def manage(service_auth):
    return service_auth("manage")


@pytest.fixture
def prices(fake_stripe, settings):
    """Two prices on sale here: the monthly one marked offered in the catalogue, the yearly one listed in
    STRIPE_OFFERED_PRICES; and where Checkout may send the buyer back."""
    settings.STRIPE_RETURN_URL_ALLOWED_HOSTS = ["app.example.com"]
    product = fake_stripe.add_product("Premium")
    month = fake_stripe.add_price(product, unit_amount=999, interval="month")
    year = fake_stripe.add_price(product, unit_amount=9900, interval="year")
    offer(month)
    settings.STRIPE_OFFERED_PRICES = [year["id"]]
    return {"month": month, "year": year}


def test_setup_intent_creates_the_customer_once_and_reuses_it(client, fake_stripe):
    first = client.post("/api/stripe/setup-intents", {}, content_type="application/json", **bearer("42"))
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["client_secret"].startswith(body["setup_intent_id"]) and body["requires_action"] is False
    second = client.post("/api/stripe/setup-intents", {"user_id": "42"}, content_type="application/json",
                         **bearer("42"))
    assert second.json()["customer_id"] == body["customer_id"]
    customers = [o for o in fake_stripe.objects.values() if o["object"] == "customer"]
    assert len(customers) == 1 and customers[0]["metadata"] == {"user_id": "42"}
    assert Subscriber.objects.get(external_id="42").stripe_customer_id == body["customer_id"]
    intent = fake_stripe.objects[body["setup_intent_id"]]
    assert intent["usage"] == "off_session"


def confirm_like_stripe_js(fake, setup_intent_id: str) -> dict:
    """The front end's part: Stripe.js confirms the SetupIntent with the card the user typed (here through
    the stripe library, against the fake)."""
    stripe_client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": fake.url})
    return stripe_client.v1.setup_intents.confirm(setup_intent_id, {"payment_method_data": {
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}})


def test_web_flow_setup_intent_then_subscription_then_its_events(client, fake_stripe, prices,
                                                                  django_capture_on_commit_callbacks):
    setup = client.post("/api/stripe/setup-intents", {}, content_type="application/json", **bearer("42")).json()
    intent = confirm_like_stripe_js(fake_stripe, setup["setup_intent_id"])
    assert intent.status == "succeeded" and intent.payment_method.startswith("pm_")
    assert fake_stripe.objects[intent.payment_method]["customer"] == setup["customer_id"]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/stripe/subscriptions",
                               {"price_id": prices["month"]["id"], "payment_method_id": intent.payment_method},
                               content_type="application/json", **bearer("42"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["requires_action"] is False and body["client_secret"] is None
    assert body["subscription"]["status"] == "ACTIVE" and body["subscription"]["user_id"] == "42"
    sub_id = body["subscription"]["provider_subscription_id"]
    stripe_sub = fake_stripe.objects[sub_id]
    assert stripe_sub["metadata"] == {"user_id": "42"}
    assert stripe_sub["customer"] == setup["customer_id"]  # the customer the card was saved for
    assert stripe_sub["default_payment_method"] == intent.payment_method
    assert check_answer("42")["is_subscribed"] is True  # at once, before any webhook

    with django_capture_on_commit_callbacks(execute=True):
        deliver_events(fake_stripe.take_events())  # the events it caused change nothing more
    row = Subscription.objects.get(provider_subscription_id=sub_id)
    assert row.status == Status.ACTIVE and row.transactions.count() == 1
    assert check_answer("42")["is_subscribed"] is True


def test_a_card_needing_3ds_returns_the_client_secret(client, fake_stripe, prices, manage):
    response = client.post("/api/stripe/subscriptions", {"user_id": "42", "price_id": prices["month"]["id"],
                                                         "payment_method_id": "pm_card_authenticationRequired"},
                           content_type="application/json", **manage)
    assert response.status_code == 201
    body = response.json()
    assert body["requires_action"] is True and "_secret_" in body["client_secret"]
    assert body["subscription"]["status"] == "INACTIVE"
    assert check_answer("42")["is_subscribed"] is False


@pytest.mark.parametrize(("payment_method", "decline_code"), [
    ("pm_card_chargeDeclined", "generic_decline"),  # refused when attached
    ("pm_card_chargeCustomerFail", None),  # attached, then the first invoice's charge fails
])
def test_a_declined_card_is_402_with_stripes_message(client, fake_stripe, prices, manage, payment_method,
                                                     decline_code):
    response = client.post("/api/stripe/subscriptions", {"user_id": "42", "price_id": prices["month"]["id"],
                                                         "payment_method_id": payment_method},
                           content_type="application/json", **manage)
    assert response.status_code == 402
    assert response.json()["error"] == {
        "code": "card_declined", "details": {"decline_code": decline_code},
        "message": "The card was declined; use another payment method or contact the card issuer."}
    assert not Subscription.objects.filter(status__in=["ACTIVE", "TRIAL"]).exists()
    # A charge that failed leaves no incomplete subscription behind at Stripe.
    assert all(o["status"] == "canceled" for o in fake_stripe.objects.values() if o["object"] == "subscription")


def test_an_offered_price_stripe_no_longer_has_is_400_with_stripes_code_not_its_text(client, fake_stripe, manage,
                                                                                      settings):
    settings.STRIPE_OFFERED_PRICES = ["price_nope"]  # listed, but deleted at Stripe
    response = client.post("/api/stripe/subscriptions", {"user_id": "42", "price_id": "price_nope",
                                                         "payment_method_id": "pm_card_visa"},
                           content_type="application/json", **manage)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "resource_missing", "details": {"param": "items[0][price]"},
        "message": "The stripe store refused the request: resource_missing (parameter items[0][price])."}
    assert "No such price" not in response.content.decode()  # the fake's own text stays in the log


def test_a_payment_method_stripe_does_not_have_is_400_with_stripes_code(client, fake_stripe, prices, manage):
    response = client.post("/api/stripe/subscriptions", {"user_id": "42", "price_id": prices["month"]["id"],
                                                         "payment_method_id": "card_nope"},
                           content_type="application/json", **manage)
    assert response.status_code == 400  # Stripe answers 404 for the payment method of the URL
    assert response.json()["error"]["code"] == "resource_missing"
    assert response.json()["error"]["details"] == {"param": None}
    assert "No such PaymentMethod" not in response.content.decode()


def test_a_key_stripe_refuses_is_502_stripe_error_without_stripes_text(client, fake_stripe, settings, manage):
    settings.STRIPE_SECRET_KEY = "sk_test_revoked"  # the fake refuses it, as Stripe does a revoked key
    response = client.post("/api/stripe/setup-intents", {"user_id": "42"}, content_type="application/json", **manage)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "stripe_error" and "credentials" in error["message"]
    assert "Invalid API Key" not in response.content.decode() and "revoked" not in response.content.decode()


def test_without_the_secret_key_the_web_api_is_503(client, fake_stripe, settings, manage):
    settings.STRIPE_SECRET_KEY = ""
    response = client.post("/api/stripe/setup-intents", {"user_id": "42"}, content_type="application/json", **manage)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_not_configured"
    assert response.json()["error"]["details"] == {"provider": "stripe", "missing_settings": ["STRIPE_SECRET_KEY"]}


def test_stripe_unreachable_is_502_without_the_librarys_text(client, fake_stripe, settings, manage):
    port = closed_port()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"  # nothing listens there
    response = client.post("/api/stripe/setup-intents", {"user_id": "42"}, content_type="application/json", **manage)
    assert response.status_code == 502 and response.json()["error"] == {
        "code": "store_unavailable", "message": "The stripe store did not answer; try again shortly."}
    assert str(port) not in response.content.decode()


def test_stripe_failing_is_502_without_its_error_message(client, fake_stripe, manage):
    fake_stripe.fail(r"POST /v1/customers$", status=500)
    response = client.post("/api/stripe/setup-intents", {"user_id": "42"}, content_type="application/json", **manage)
    assert response.status_code == 502 and response.json()["error"]["code"] == "store_unavailable"
    assert "Injected failure" not in response.content.decode()  # the fake's raw message


def test_callers_act_only_for_themselves_or_with_the_manage_scope(client, fake_stripe, service_auth):
    other = client.post("/api/stripe/setup-intents", {"user_id": "43"}, content_type="application/json",
                        **bearer("42"))
    assert other.status_code == 403
    no_scope = client.post("/api/stripe/setup-intents", {"user_id": "42"}, content_type="application/json",
                           **service_auth("check", "read"))
    assert no_scope.status_code == 403
    anonymous = client.post("/api/stripe/setup-intents", {"user_id": "42"}, content_type="application/json")
    assert anonymous.status_code == 401
    missing_user = client.post("/api/stripe/setup-intents", {}, content_type="application/json",
                               **service_auth("manage"))
    assert missing_user.status_code == 400
    assert not [o for o in fake_stripe.objects.values() if o["object"] == "customer"]


def test_checkout_session_then_completion_subscribes(client, fake_stripe, prices,
                                                     django_capture_on_commit_callbacks):
    response = client.post("/api/stripe/checkout-sessions", {
        "price_id": prices["year"]["id"], "success_url": "https://app.example.com/ok",
        "cancel_url": "https://app.example.com/cancel"}, content_type="application/json", **bearer("42"))
    assert response.status_code == 200, response.content
    session = fake_stripe.objects[response.json()["id"]]
    assert response.json()["url"] == session["url"]
    assert session["client_reference_id"] == "42" and session["mode"] == "subscription"
    assert session["_params"]["subscription_data"] == {"metadata": {"user_id": "42"}}

    fake_stripe.complete_checkout(session["id"])
    with django_capture_on_commit_callbacks(execute=True):
        deliver_events(fake_stripe.take_events())
    row = Subscription.objects.get(subscriber__external_id="42")
    assert (row.status, row.period_unit, row.amount_minor) == (Status.ACTIVE, "year", 9900)
    assert check_answer("42")["is_subscribed"] is True


def test_portal_session_for_a_customer_and_404_without_one(client, fake_stripe, settings):
    settings.STRIPE_RETURN_URL_ALLOWED_HOSTS = [".example.com"]  # the domain and its subdomains
    assert client.post("/api/stripe/portal-sessions", {}, content_type="application/json",
                       **bearer("42")).status_code == 404
    client.post("/api/stripe/setup-intents", {}, content_type="application/json", **bearer("42"))
    response = client.post("/api/stripe/portal-sessions", {"return_url": "https://app.example.com/account"},
                           content_type="application/json", **bearer("42"))
    assert response.status_code == 200 and response.json()["url"].startswith("https://billing.stripe.com/")


def _subscribed(client, fake_stripe, price) -> dict:
    response = client.post("/api/stripe/subscriptions", {"price_id": price["id"], "payment_method_id": "pm_card_visa"},
                           content_type="application/json", **bearer("42"))
    assert response.status_code == 201
    return response.json()["subscription"]


def test_cancel_at_period_end_through_the_generic_endpoint(client, fake_stripe, prices):
    sub = _subscribed(client, fake_stripe, prices["month"])
    response = client.post(f"/api/subscriptions/{sub['id']}/cancel", content_type="application/json", **bearer("42"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "CANCELED" and response.json()["auto_renew"] is False
    assert fake_stripe.objects[sub["provider_subscription_id"]]["cancel_at_period_end"] is True
    assert check_answer("42")["is_subscribed"] is True  # until the period ends


def test_change_plan_monthly_to_yearly_with_proration(client, fake_stripe, prices):
    sub = _subscribed(client, fake_stripe, prices["month"])
    response = client.post(f"/api/subscriptions/{sub['id']}/change-plan", {"price_id": prices["year"]["id"]},
                           content_type="application/json", **bearer("42"))
    assert response.status_code == 200, response.content
    assert response.json()["product"]["id"] == prices["year"]["id"]
    row = Subscription.objects.get(pk=sub["id"])
    assert (row.period_unit, row.amount_minor, row.store_product_id) == ("year", 9900, prices["year"]["id"])
    stripe_id = sub["provider_subscription_id"]
    update = [p for m, path, p in fake_stripe.requests if m == "POST" and path.endswith(stripe_id)]
    assert update[-1]["proration_behavior"] == "create_prorations"

    bad = client.post(f"/api/subscriptions/{sub['id']}/change-plan", {"price_id": "price_nope"},
                      content_type="application/json", **bearer("42"))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "price_not_offered"


def test_change_plan_of_a_subscription_stripe_no_longer_has_is_400_not_found(client, fake_stripe, prices):
    sub = _subscribed(client, fake_stripe, prices["month"])
    del fake_stripe.objects[sub["provider_subscription_id"]]
    response = client.post(f"/api/subscriptions/{sub['id']}/change-plan", {"price_id": prices["year"]["id"]},
                           content_type="application/json", **bearer("42"))
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "not_found",
                                        "message": f"Stripe has no subscription {sub['provider_subscription_id']}"}


def test_the_schema_names_each_stripe_body_once_and_describes_it_right():
    """Serializers sharing a name (`Input`, `Output`) made the schema describe /portal-sessions,
    /subscriptions and /setup-intents with one another's fields."""
    reset_generator_stats()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    collisions = [w for w in GENERATOR_STATS._warn_cache if "identical names" in w]
    assert collisions == []

    def fields(path: str, part: str) -> set[str]:
        operation = schema["paths"][path]["post"]
        content = (operation["requestBody"] if part == "request" else
                   operation["responses"][next(c for c in ("201", "200") if c in operation["responses"])])["content"]
        ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        return set(schema["components"]["schemas"][ref]["properties"])

    assert fields("/api/stripe/setup-intents", "request") == {"user_id"}
    assert fields("/api/stripe/setup-intents", "response") == {"setup_intent_id", "client_secret", "customer_id",
                                                               "status", "requires_action"}
    assert fields("/api/stripe/subscriptions", "request") == {"user_id", "price_id", "payment_method_id"}
    assert fields("/api/stripe/subscriptions", "response") == {"subscription", "requires_action", "client_secret"}
    assert fields("/api/stripe/checkout-sessions", "request") == {"user_id", "price_id", "success_url", "cancel_url"}
    assert fields("/api/stripe/portal-sessions", "request") == {"user_id", "return_url"}
    assert fields("/api/stripe/portal-sessions", "response") == {"id", "url"}


def test_subscribe_and_change_plan_by_a_service_key_are_in_the_audit_log(client, fake_stripe, prices, manage):
    response = client.post("/api/stripe/subscriptions", {"user_id": "42", "price_id": prices["month"]["id"],
                                                         "payment_method_id": "pm_card_visa"},
                           content_type="application/json", **manage)
    sub = response.json()["subscription"]
    client.post(f"/api/subscriptions/{sub['id']}/change-plan", {"price_id": prices["year"]["id"]},
                content_type="application/json", **manage)
    subscribe, change = AuditEntry.objects.order_by("id")
    assert (subscribe.action, subscribe.actor_label, subscribe.subscription_id, subscribe.subscriber.external_id) == (
        "api_stripe_subscribe", "API key orders-service", int(sub["id"]), "42")
    assert subscribe.details["price_id"] == prices["month"]["id"] and subscribe.details["status"] == "ACTIVE"
    assert (change.action, change.details["price_id"]) == ("api_change_plan", prices["year"]["id"])
    assert (change.details["before"]["product"], change.details["after"]["product"]) == (
        prices["month"]["id"], prices["year"]["id"])
