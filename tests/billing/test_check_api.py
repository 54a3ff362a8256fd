"""GET /api/subscriptions/check/<user_id>: the contract, the cache, and who may call it."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from accounts.services import api_key_revoke
from billing import entitlement_cache
from billing.apply import apply_snapshot
from billing.models import StatusChange, Subscription
from billing.selectors import check_answer
from billing.snapshots import Cause, CauseKind, Provider, Snapshot
from billing.statuses import Status
from tests.api_support import UNTRUSTED, api_key, bearer, configure_jwt, token, with_key
from tests.factories import ProductFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

CONTRACT_KEYS = {"user_id", "is_subscribed", "status", "provider", "product_id", "expires_at", "entitlements",
                 "as_of", "last_confirmed_at"}


@pytest.fixture(autouse=True)
def _jwt(settings):
    configure_jwt(settings)
    clear_api_key_cache()
    yield
    clear_api_key_cache()


def check(client, user_id, query="", **extra):
    return client.get(f"/api/subscriptions/check/{user_id}{query}", **extra)


def test_contract_for_an_active_subscriber(client):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="123"), last_verified_at=timezone.now())
    response = check(client, "123")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == CONTRACT_KEYS
    assert body["user_id"] == "123"
    assert body["is_subscribed"] is True
    assert body["status"] == "ACTIVE"
    assert body["provider"] == "stripe"
    assert body["product_id"] == sub.store_product_id
    assert body["expires_at"] == sub.expires_at.isoformat().replace("+00:00", "Z")
    assert body["entitlements"] == ["premium"]
    assert body["expires_at"].endswith("Z") and body["as_of"].endswith("Z")
    assert body["last_confirmed_at"] == sub.last_verified_at.isoformat().replace("+00:00", "Z")


def test_unknown_user_is_200_not_subscribed(client):
    body = check(client, "no-such-user").json()
    assert body == {"user_id": "no-such-user", "is_subscribed": False, "status": "INACTIVE", "provider": None,
                    "product_id": None, "expires_at": None, "entitlements": [], "as_of": body["as_of"],
                    "last_confirmed_at": None}


def test_subscribed_if_any_subscription_is_entitled(client):
    user = SubscriberFactory(external_id="7")
    now = timezone.now()
    SubscriptionFactory(subscriber=user, provider=Provider.APPLE, status=Status.EXPIRED,
                        expires_at=now - timedelta(days=3),
                        product=ProductFactory(provider=Provider.APPLE, entitlements=["premium"]))
    google = SubscriptionFactory(subscriber=user, provider=Provider.GOOGLE, status=Status.ON_GRACE,
                                 expires_at=now - timedelta(hours=1), grace_until=now + timedelta(days=2),
                                 product=ProductFactory(provider=Provider.GOOGLE, entitlements=["no_ads"]))
    SubscriptionFactory(subscriber=user, status=Status.REVOKED, expires_at=now + timedelta(days=9))
    body = check(client, "7").json()
    assert body["is_subscribed"] is True
    assert body["status"] == "ON_GRACE" and body["provider"] == "google"
    assert body["product_id"] == google.store_product_id
    assert body["entitlements"] == ["no_ads"]  # only what entitled subscriptions grant


def test_the_longest_lasting_entitled_subscription_is_shown(client):
    user = SubscriberFactory(external_id="8")
    now = timezone.now()
    SubscriptionFactory(subscriber=user, expires_at=now + timedelta(days=3))
    longer = SubscriptionFactory(subscriber=user, provider=Provider.XSOLLA, status=Status.CANCELED,
                                 expires_at=now + timedelta(days=300))
    body = check(client, "8").json()
    assert body["provider"] == "xsolla" and body["product_id"] == longer.store_product_id
    assert body["status"] == "CANCELED" and body["is_subscribed"] is True


def test_entitlement_narrows_the_answer(client):
    user = SubscriberFactory(external_id="9")
    SubscriptionFactory(subscriber=user, product=ProductFactory(entitlements=["premium", "no_ads"]))
    assert check(client, "9", "?entitlement=no_ads").json()["entitlements"] == ["no_ads"]
    assert check(client, "9", "?entitlement=no_ads").json()["is_subscribed"] is True
    other = check(client, "9", "?entitlement=pro_tools").json()
    assert other["is_subscribed"] is False and other["entitlements"] == []


def test_unmapped_product_subscribes_but_grants_nothing(client):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="10"), product=ProductFactory(entitlements=[]))
    body = check(client, "10").json()
    assert body["is_subscribed"] is True and body["entitlements"] == []


def test_expiry_passes_without_any_write(client):
    user = SubscriberFactory(external_id="11")
    sub = SubscriptionFactory(subscriber=user, expires_at=timezone.now() + timedelta(milliseconds=400))
    assert check(client, "11").json()["is_subscribed"] is True  # the cache is filled here
    time.sleep(0.5)
    body = check(client, "11").json()
    assert body["is_subscribed"] is False
    assert body["status"] == "EXPIRED"  # as it stands now, before the sweep writes it
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE and not StatusChange.objects.exists()


def test_selector_answers_at_any_moment():
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="12"), status=Status.ON_GRACE,
                              expires_at=timezone.now(), grace_until=timezone.now() + timedelta(days=1))
    assert check_answer("12", now=sub.grace_until - timedelta(seconds=1))["is_subscribed"] is True
    later = check_answer("12", now=sub.grace_until)
    assert later["is_subscribed"] is False and later["status"] == "EXPIRED"


def test_cache_is_filled_and_kept_exact_by_the_write_path(client, redis_client,
                                                          django_capture_on_commit_callbacks):
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        apply_snapshot(Snapshot(provider="stripe", provider_subscription_id="sub_c1", status=Status.ACTIVE,
                                observed_at=now, user_id="13", store_product_id="price_c",
                                expires_at=now + timedelta(days=30)), Cause(CauseKind.WEBHOOK, "e1"))
    cached = entitlement_cache.get("13")
    assert [e["status"] for e in cached] == ["ACTIVE"]
    assert check(client, "13").json()["is_subscribed"] is True
    with django_capture_on_commit_callbacks(execute=True):
        apply_snapshot(Snapshot(provider="stripe", provider_subscription_id="sub_c1", status=Status.REVOKED,
                                observed_at=now + timedelta(seconds=5), user_id="13"), Cause(CauseKind.WEBHOOK, "e2"))
    assert [e["status"] for e in entitlement_cache.get("13")] == ["REVOKED"]
    body = check(client, "13").json()
    assert body["is_subscribed"] is False and body["status"] == "REVOKED"


def test_answers_come_from_the_cache_when_it_is_there(client, redis_client):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="14"))
    assert check(client, "14").json()["is_subscribed"] is True
    assert redis_client.exists(entitlement_cache.key_for("14"))
    # A write around the write path (never done in the code) is invisible: the cached entries answer.
    Subscription.objects.update(status=Status.REVOKED)
    assert check(client, "14").json()["is_subscribed"] is True


def test_redis_down_answers_from_the_database(client, settings):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="15"))
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert check(client, "15").json()["is_subscribed"] is True
    Subscription.objects.update(status=Status.REVOKED)
    assert check(client, "15").json()["is_subscribed"] is False  # straight from the database


def test_no_redis_configured_answers_from_the_database(client, settings):
    settings.REDIS_URL = ""
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="16"))
    assert check(client, "16").json()["is_subscribed"] is True


# --- who may call it --------------------------------------------------------------------------

def test_trusted_network_needs_no_credentials(client):
    assert check(client, "1", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert check(client, "1", REMOTE_ADDR="::1").status_code == 200


def test_untrusted_anonymous_caller_is_refused(client):
    response = check(client, "1", REMOTE_ADDR=UNTRUSTED)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert "Api-Key" in response["WWW-Authenticate"]


def test_forwarded_for_is_not_trusted(client):
    response = check(client, "1", REMOTE_ADDR=UNTRUSTED, HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 401


def test_trusted_networks_come_from_settings(client, settings):
    settings.CHECK_API_TRUSTED_NETWORKS = ["10.20.0.0/16"]
    assert check(client, "1", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert check(client, "1", REMOTE_ADDR="127.0.0.1").status_code == 401


def test_api_key_with_check_scope(client, service_auth):
    assert check(client, "1", **service_auth("check")).status_code == 200


def test_api_key_without_check_scope_is_forbidden(client, service_auth):
    response = check(client, "1", **service_auth("read", "verify"))
    assert response.status_code == 403
    assert "check" in response.json()["error"]["message"]


def test_revoked_and_unknown_keys_are_refused_even_from_a_trusted_network(client):
    raw = api_key("check")
    assert check(client, "1", **with_key(raw)).status_code == 200
    api_key_revoke(prefix=raw.split("_")[1])
    response = check(client, "1", HTTP_AUTHORIZATION=f"Api-Key {raw}", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    forged = raw[:-4] + "AAAA"
    assert check(client, "1", **with_key(forged)).status_code == 401


def test_jwt_own_user_only(client):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="21"))
    own = check(client, "21", **bearer("21"))
    assert own.status_code == 200 and own.json()["is_subscribed"] is True
    other = check(client, "22", **bearer("21"))
    assert other.status_code == 403 and other.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize(("kwargs", "code", "words"), [
    ({"expires_in": -120}, "token_expired", "expired"),
    ({"secret": "another-secret-of-at-least-32-bytes!!"}, "invalid_token", "signature"),
    ({"aud": "someone-else"}, "invalid_token", "audience"),
    ({"iss": "https://evil.example.com"}, "invalid_token", "issuer"),
])
def test_bad_tokens_are_401_with_a_clear_reason(client, kwargs, code, words):
    response = check(client, "21", HTTP_AUTHORIZATION=f"Bearer {token('21', **kwargs)}", REMOTE_ADDR=UNTRUSTED)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert words in response.json()["error"]["message"]


def test_unknown_scheme_is_refused(client):
    response = check(client, "1", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz", REMOTE_ADDR=UNTRUSTED)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unsupported_authorization"


def test_only_get(client):
    assert client.post("/api/subscriptions/check/1").status_code == 405


def test_host_header_is_still_validated(client):
    assert check(client, "1", HTTP_HOST="evil.example.com").status_code == 400
