"""No configured secret, token or API key in any log line of a full flow (docs/operations.md "Logs"):
Stripe, Google and Xsolla webhooks through the real pipeline (each store's fake at the network edge),
refused deliveries, and the check API with an API key and a user's token, all logged at DEBUG."""

import pytest
from django.test import Client

from tests.api_support import bearer, configure_jwt, token, with_key
from tests.factories import ProductFactory
from tests.helpers import deliver
from tests.providers.google.conftest import load_sequence, push, push_request, token_of
from tests.providers.stripe.conftest import deliver_events
from tests.providers.stripe.conftest import signed_headers as stripe_headers
from tests.providers.xsolla.conftest import fixture_bytes, send
from tests.providers.xsolla.conftest import signed_headers as xsolla_headers

pytestmark = pytest.mark.django_db

PUBSUB_TOKEN = "pubsub-shared-verification-token-5c1e"
XSOLLA_API_KEY = "xsolla-api-key-9d8e7f6a5b4c"


def stripe_flow(fake, price):
    ProductFactory(provider="stripe", store_product_id=price["id"], entitlements=["premium"])
    customer = fake.customer_create({"email": "u42@example.com", "metadata": {"user_id": "42"}})
    fake.start_subscription(customer, price, metadata={"user_id": "42"}, payment_method="pm_card_visa")
    delivered = deliver_events(fake.take_events())
    assert delivered and all(d.response.status_code == 200 for d in delivered)
    body = b'{"id": "evt_forged", "type": "customer.subscription.updated"}'
    forged = deliver("stripe", body, stripe_headers(body, secret="whsec_wrong"))
    assert forged.response.status_code in (400, 401, 403)


def google_flow(fake):
    step = load_sequence("06_purchase_grace_hold_recover.json")[0]
    fake.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
    relayed = {"X-Pubsub-Verification-Token": PUBSUB_TOKEN}
    assert push(fake, step["developerNotification"], message_id="g-1", headers=relayed).response.status_code == 200
    wrong = push(fake, step["developerNotification"], message_id="g-2",
                 headers={"X-Pubsub-Verification-Token": PUBSUB_TOKEN[::-1]})
    assert wrong.response.status_code == 403
    in_url = push(fake, step["developerNotification"], message_id="g-3", query={"token": PUBSUB_TOKEN})
    assert in_url.response.status_code == 401
    headers, _body, _query = push_request(fake, step["developerNotification"], message_id="g-4")
    return headers["Authorization"].partition(" ")[2]


def xsolla_flow():
    body = fixture_bytes("docs/create_subscription")
    assert send(body).response.status_code in (200, 204)
    forged = deliver("xsolla", body, xsolla_headers(body, secret="not-the-project-secret"))
    assert forged.response.status_code >= 400


def check_flow(service_auth):
    client = Client()
    key_headers = service_auth("check")
    assert client.get("/api/subscriptions/check/42", **key_headers).status_code == 200
    assert client.get("/api/subscriptions/check/42", **with_key("bk_live.not-a-real-key-123456")).status_code == 401
    user = bearer("42")
    assert client.get("/api/subscriptions/check/42", **user).status_code == 200
    expired = token("42", expires_in=-60)
    assert client.get("/api/subscriptions/check/42", HTTP_AUTHORIZATION=f"Bearer {expired}",
                      REMOTE_ADDR="203.0.113.7").status_code == 401
    return [key_headers["HTTP_AUTHORIZATION"].partition(" ")[2], user["HTTP_AUTHORIZATION"].partition(" ")[2], expired]


def test_no_secret_in_any_log_line_of_a_full_flow(settings, captured_logs, fake_stripe, monthly, google,
                                                  xsolla, service_auth):
    settings.SECRET_KEY = "django-secret-key-for-the-log-test-0f9e8d7c"
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = PUBSUB_TOKEN
    settings.XSOLLA_API_KEY = XSOLLA_API_KEY
    configure_jwt(settings)

    stripe_flow(fake_stripe, monthly)
    oidc_token = google_flow(google)
    xsolla_flow()
    credentials = check_flow(service_auth)

    secrets = {name: str(getattr(settings, name)) for name in (
        "SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "XSOLLA_WEBHOOK_SECRET", "XSOLLA_API_KEY",
        "GOOGLE_PUBSUB_VERIFICATION_TOKEN", "JWT_SECRET")}
    secrets.update({"raw API key": credentials[0], "bearer token": credentials[1], "expired token": credentials[2],
                    "Pub/Sub OIDC token": oidc_token})
    assert all(len(value) >= 8 for value in secrets.values()), secrets
    # The flow was logged (each store's lines, the stripe library's own, refusals).
    loggers = {line["logger"] for line in captured_logs.lines()}
    assert "stripe" in loggers and "django.request" in loggers, loggers
    for where, text in (("as logged", captured_logs.raw_text()), ("as written", captured_logs.stream.getvalue())):
        leaked = [name for name, value in secrets.items() if value in text]
        assert not leaked, f"{leaked} in the log lines ({where})"
