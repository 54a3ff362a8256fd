"""Input the API used to answer with a 500: each is now a clear 4xx in the error shape, and the limits the
schema declares are the ones enforced."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Subscriber, Subscription
from tests.api_support import bearer, configure_jwt
from tests.factories import SubscriberFactory, SubscriptionFactory
from tests.providers.google.conftest import load_sequence

pytestmark = pytest.mark.django_db

ALL_SCOPES = ("check", "read", "verify", "manage")


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    assert "Traceback" not in response.content.decode() and "Error:" not in body["error"]["message"]
    return body["error"]


def _verify(client, body, **headers):
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.post("/api/subscriptions/verify", raw, content_type="application/json", **headers)


@pytest.mark.parametrize("offset", ["99999999999999999999", "9223372036854775807", "10001", "-1", "", "1.5"])
def test_an_offset_out_of_bounds_is_400(client, service_auth, offset):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="u1"))
    response = client.get(f"/api/users/u1/subscriptions?offset={offset}", **service_auth("read"))
    error = _error(response, 400)
    assert error["code"] == "invalid" and "offset" in error["message"]


def test_the_largest_offset_the_schema_allows_is_an_empty_page(client, service_auth):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="u1"))
    response = client.get("/api/users/u1/subscriptions?offset=10000&limit=100", **service_auth("read"))
    assert response.status_code == 200
    assert response.json()["items"] == [] and response.json()["has_more"] is False


@pytest.mark.parametrize("subscription_id", ["%C2%B2", "%D9%A3", "99999999999999999999", "9223372036854775808",
                                             "0", "1%00", "%00"])
def test_a_subscription_id_that_names_no_row_is_404(client, service_auth, subscription_id):
    """'²'.isdigit() is true and int('²') fails; Arabic-Indic digits convert but are no id of ours."""
    SubscriptionFactory()
    for action in ("cancel", "change-plan"):
        response = client.post(f"/api/subscriptions/{subscription_id}/{action}", {"price_id": "price_1"},
                               content_type="application/json", **service_auth("manage"))
        assert _error(response, 404)["code"] == "not_found"


@pytest.mark.parametrize("user_id", ["%00", "a%00b", "tab%09", "newline%0A", "x" * 256])
def test_a_user_id_with_a_nul_or_control_character_or_too_long_is_400(client, service_auth, user_id):
    headers = service_auth(*ALL_SCOPES)
    for path in (f"/api/users/{user_id}/subscriptions", f"/api/subscriptions/check/{user_id}"):
        error = _error(client.get(path, **headers), 400)
        assert error["code"] == "invalid" and "user id" in error["message"]


def test_user_ids_the_schema_allows_are_answered(client, service_auth):
    headers = service_auth(*ALL_SCOPES)
    for user_id in ("42", "x" * 255, "üser ü", "a b", "%C2%B2"):
        assert client.get(f"/api/users/{user_id}/subscriptions", **headers).status_code == 200
        assert client.get(f"/api/subscriptions/check/{user_id}", **headers).json()["is_subscribed"] is False


@pytest.mark.parametrize(("body", "reason"), [
    ('{"provider": "apple", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper"),
    ('{"provider": "apple", "x": ' + "[" * 33 + "]" * 33 + "}", "nested deeper"),
    ('{"provider": "google", "purchase_token": "tok\\u0000en"}', "NUL"),
    ('{"provider": "google", "purchase_token": "\\ud800"}', "unpaired surrogate"),
    ('{"provider": "google", "purchase_token": NaN}', "NaN"),
    ('{"provider": "google", ', "not valid JSON"),
])
def test_a_hostile_verify_body_is_400_and_nothing_is_written(client, service_auth, body, reason):
    error = _error(_verify(client, body, **service_auth("verify")), 400)
    assert error["code"] == "parse_error" and reason in error["message"]
    assert not Subscription.objects.exists() and not Subscriber.objects.exists()


def test_a_body_that_is_not_utf8_is_400(client, service_auth):
    response = client.post("/api/subscriptions/verify", b'{"provider": "\xff"}', content_type="application/json",
                           **service_auth("verify"))
    assert _error(response, 400)["code"] == "parse_error"


@pytest.mark.parametrize(("body", "field"), [
    ({"provider": "google", "purchase_token": "t" * (2 * 1024 * 1024)}, "purchase_token"),
    ({"provider": "google", "purchase_token": "t" * 4097}, "purchase_token"),
    ({"provider": "google", "purchase_token": "tok", "product_id": "p" * 256}, "product_id"),
    ({"provider": "apple", "signed_transaction": "s" * (64 * 1024 + 1)}, "signed_transaction"),
    ({"provider": "google", "purchase_token": "tok", "user_id": "u" * 256}, "user_id"),
])
def test_a_purchase_over_the_declared_limits_never_reaches_the_store(client, service_auth, google, body, field):
    """A 2 MiB purchase token used to be forwarded to Google."""
    body.setdefault("user_id", "42")
    error = _error(_verify(client, body, **service_auth("verify")), 400)
    assert error["code"] == "invalid" and field in error["details"]
    assert google.calls == [] and not Subscription.objects.exists()


@pytest.mark.parametrize("body", [
    {"provider": "apple", "user_id": "42"},
    {"provider": "apple", "user_id": "42", "transaction_id": "1", "receipt": "abc"},
    {"provider": "amazon", "user_id": "42", "purchase_token": "tok"},
    {"user_id": "42", "purchase_token": "tok"},
    {"provider": "google", "user_id": "42"},
    [{"provider": "google", "purchase_token": "tok"}],
])
def test_a_body_matching_no_single_verify_form_is_400(client, service_auth, body):
    assert _error(_verify(client, body, **service_auth("verify")), 400)["code"] == "invalid"


def test_an_empty_verify_body_is_400(client, service_auth):
    response = client.post("/api/subscriptions/verify", "", content_type="application/json", **service_auth("verify"))
    assert _error(response, 400)["code"] == "invalid"


def test_a_non_ascii_digit_transaction_id_is_refused_before_apple(client, service_auth, apple_settings, fake_appstore):
    response = _verify(client, {"provider": "apple", "user_id": "42", "transaction_id": "²"},
                       **service_auth("verify"))
    assert _error(response, 400)["code"] == "invalid_transaction_id"


def test_the_409_names_no_subscription_of_ours(client, settings, google):
    """Verify's conflict answer says the purchase is another user's, without our id of their row."""
    configure_jwt(settings)
    purchase = load_sequence("06_purchase_grace_hold_recover.json", user_id="owner")[0]["subscriptionPurchaseV2"]
    purchase["lineItems"][0]["expiryTime"] = (timezone.now() + timedelta(days=30)).isoformat()
    google.set_purchase("tok-owned", purchase)
    theirs = SubscriptionFactory(subscriber=SubscriberFactory(external_id="owner"), provider="google",
                                 provider_subscription_id="tok-owned")
    response = _verify(client, {"provider": "google", "purchase_token": "tok-owned"}, **bearer("intruder"))
    error = _error(response, 409)
    assert error["code"] == "purchase_owned_by_another_user"
    assert "subscription_id" not in error["details"] and str(theirs.pk) not in json.dumps(error["details"])


def test_the_schema_declares_the_limits(client):
    schema = client.get("/api/schema/?format=json").json()
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/users/{user_id}/subscriptions"]["get"]
              ["parameters"]}
    assert params["offset"]["maximum"] == 10_000 and params["limit"] == {
        "type": "integer", "minimum": 1, "maximum": 100, "default": 15}
    assert params["user_id"]["maxLength"] == 255
    cancel = schema["paths"]["/api/subscriptions/{subscription_id}/cancel"]["post"]["parameters"][0]["schema"]
    assert cancel["pattern"] == "^[0-9]{1,19}$"
    components = schema["components"]["schemas"]
    assert components["GoogleVerify"]["properties"]["purchase_token"]["maxLength"] == 4096
    assert schema["paths"]["/api/subscriptions/verify"]["post"]["requestBody"]["required"] is True
    assert components["ProductRef"]["properties"]["id"]["nullable"] is True


def test_a_body_over_the_upload_limit_is_400_in_the_error_shape(client, service_auth, google):
    body = {"provider": "google", "user_id": "42", "purchase_token": "t" * (3 * 1024 * 1024)}
    error = _error(_verify(client, body, **service_auth("verify")), 400)
    assert error["code"] == "bad_request" and google.calls == []  # DATA_UPLOAD_MAX_MEMORY_SIZE


@pytest.mark.parametrize("query", ["limit=%00", "offset=1%00", "entitlement=%00", "limit=%C2%B2"])
def test_a_nul_or_a_non_ascii_digit_in_a_query_is_never_a_500(client, service_auth, query):
    headers = service_auth(*ALL_SCOPES)
    for path in ("/api/users/u1/subscriptions", "/api/subscriptions/check/u1"):
        response = client.get(f"{path}?{query}", **headers)
        assert response.status_code in (200, 400), response.content[:300]
        if response.status_code == 400:
            assert _error(response, 400)["code"] == "invalid"


@pytest.mark.parametrize("sub", ["a\x00b", "x" * 256, "tab\t"])
def test_a_token_whose_user_id_the_api_cannot_take_is_400(client, settings, google, sub):
    """The apps' auth signs the token, but its user id still has to fit the database."""
    configure_jwt(settings)
    assert _error(client.get("/api/me/subscriptions", **bearer(sub)), 400)["code"] == "invalid"
    response = _verify(client, {"provider": "google", "purchase_token": "tok"}, **bearer(sub))
    assert _error(response, 400)["code"] == "invalid" and google.calls == []
    assert not Subscriber.objects.exists()
