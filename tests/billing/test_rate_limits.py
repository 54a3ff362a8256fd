"""Rate limits (docs/security.md "Rate limits"), as callers meet them: verify per user and per API key,
Stripe payment declines per user (no card-testing oracle), failed authentication per client address, and
the share of the Google Play budget that verification may spend. Counters live in the tests' real Redis;
time is moved with time-machine, never waited for."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import path
from django.utils import timezone
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.authentication import clear_api_key_cache
from billing.api.auth_failures import forget_refused_addresses
from billing.models import Subscription
from tests.api_support import UNTRUSTED, api_key, bearer, configure_jwt, with_key
from tests.helpers import closed_port
from tests.providers.google.conftest import load_sequence, push, subscription_notification

pytestmark = pytest.mark.django_db

VERIFY = "/api/subscriptions/verify"


@pytest.fixture(autouse=True)
def _deployment(settings):
    configure_jwt(settings)
    clear_api_key_cache()
    forget_refused_addresses()
    yield
    forget_refused_addresses()


def _purchase(account_id: str) -> dict:
    purchase = load_sequence("06_purchase_grace_hold_recover.json", user_id=account_id)[0]["subscriptionPurchaseV2"]
    purchase["startTime"] = timezone.now().isoformat()
    purchase["lineItems"][0]["expiryTime"] = (timezone.now() + timedelta(days=30)).isoformat()
    return purchase


def _verify(client, token: str, *, user_id: str | None = None, **auth):
    body = {"provider": "google", "purchase_token": token, "product_id": "session_pro"}
    if user_id is not None:
        body["user_id"] = user_id
    return client.post(VERIFY, body, content_type="application/json", **auth)


def _assert_429(response, limit: str) -> int:
    assert response.status_code == 429, response.content
    retry_after = int(response["Retry-After"])
    error = response.json()["error"]
    assert error["code"] == "rate_limited" and error["message"]
    assert error["details"] == {"retry_after": retry_after, "limit": limit}
    return retry_after


# --- verify -------------------------------------------------------------------------------------

def test_the_61st_verify_of_a_user_within_a_minute_is_429_and_other_users_are_not_affected(client, google):
    google.set_purchase("tok-42", _purchase("42"))
    google.set_purchase("tok-43", _purchase("43"))
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        answers = [_verify(client, "tok-42", **bearer("42")).status_code for _ in range(60)]
        assert answers == [200] * 60  # the documented default: 60 a minute
        calls = len(google.calls_of("get"))
        refused = _verify(client, "tok-42", **bearer("42"))
        assert 1 <= _assert_429(refused, "verify_per_user") <= 60
        assert len(google.calls_of("get")) == calls  # Google was not asked
        assert _verify(client, "tok-43", **bearer("43")).status_code == 200  # another user
        traveller.shift(61)
        assert _verify(client, "tok-42", **bearer("42")).status_code == 200  # the window moved on


def test_a_service_verifying_for_a_user_counts_against_that_user_too(client, google, settings):
    settings.RATE_LIMIT_VERIFY_PER_USER = "2/minute"
    google.set_purchase("tok-42", _purchase("42"))
    key = with_key(api_key("verify"))
    assert [_verify(client, "tok-42", user_id="42", **key).status_code for _ in range(2)] == [200, 200]
    _assert_429(_verify(client, "tok-42", user_id="42", **key), "verify_per_user")
    assert _verify(client, "tok-42", **bearer("42")).status_code == 429  # the user's own app: same counter


def test_verifies_per_api_key_are_limited_and_another_key_is_not_affected(client, google, settings):
    settings.RATE_LIMIT_VERIFY_PER_API_KEY = "5/minute"
    for user in range(100, 107):
        google.set_purchase(f"tok-{user}", _purchase(str(user)))
    busy, other = with_key(api_key("verify", name="busy")), with_key(api_key("verify", name="other"))
    answers = [_verify(client, f"tok-{u}", user_id=str(u), **busy).status_code for u in range(100, 105)]
    assert answers == [200] * 5  # five different users: the per-user limit is not what refuses
    _assert_429(_verify(client, "tok-105", user_id="105", **busy), "verify_per_api_key")
    assert _verify(client, "tok-105", user_id="105", **other).status_code == 200
    assert not Subscription.objects.filter(provider_subscription_id="tok-106").exists()


def test_a_refused_verify_is_not_counted(client, google, settings):
    """A client retrying while refused does not keep its window full: room opens when the oldest
    accepted verify leaves the window, as Retry-After said."""
    settings.RATE_LIMIT_VERIFY_PER_USER = "2/minute"
    google.set_purchase("tok-42", _purchase("42"))
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        assert _verify(client, "tok-42", **bearer("42")).status_code == 200
        traveller.shift(30)
        assert _verify(client, "tok-42", **bearer("42")).status_code == 200
        traveller.shift(10)
        for _ in range(5):
            retry_after = _assert_429(_verify(client, "tok-42", **bearer("42")), "verify_per_user")
        assert retry_after == 20  # the first verify (40 s ago) leaves the 60 s window in 20 s
        traveller.shift(20)
        assert _verify(client, "tok-42", **bearer("42")).status_code == 200


# --- the Google Play budget -------------------------------------------------------------------------

def _spend_verifies(client, google, count: int) -> list[int]:
    google.set_purchase("tok-42", _purchase("42"))
    return [_verify(client, "tok-42", **bearer("42")).status_code for _ in range(count)]


def _webhook_purchase(google):
    google.set_purchase("tok-new", _purchase("77"))
    return push(google, subscription_notification("tok-new", 4))  # SUBSCRIPTION_PURCHASED


def test_verifies_of_one_user_leave_webhook_processing_its_google_budget(client, google, settings):
    settings.STORE_BUDGET_GOOGLE_PER_MINUTE = 20  # scaled down; verify may spend 25 %: 5 calls a minute
    answers = _spend_verifies(client, google, 45)
    assert answers.count(200) >= 3 and answers.count(502) >= 38  # the verify share ran out...
    assert len(google.calls) <= 5 + 1  # ...after at most its 5 calls (plus the token exchange)
    delivered = _webhook_purchase(google)
    assert delivered.event.status == "processed", delivered.event.error
    assert delivered.subscription.status == "ACTIVE" and delivered.subscription.acknowledged_at is not None


def test_without_a_verify_share_the_same_verifies_starve_webhook_processing(client, google, settings):
    """The failure the share prevents (issue 12): verify allowed the whole budget."""
    settings.STORE_BUDGET_GOOGLE_PER_MINUTE = 20
    settings.STORE_BUDGET_VERIFY_PERCENT = 100
    _spend_verifies(client, google, 45)
    delivered = _webhook_purchase(google)
    assert delivered.event.status != "processed" and "calls/minute" in delivered.event.error
    assert not Subscription.objects.filter(provider_subscription_id="tok-new").exists()


# --- Stripe: declines -----------------------------------------------------------------------------

@pytest.fixture
def price(fake_stripe, settings):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium"), unit_amount=999, interval="month")
    settings.STRIPE_OFFERED_PRICES = [price["id"]]  # on sale: only offered prices reach Stripe at all
    return price


def _subscribe(client, user: str, price: dict, card: str | None = None):
    card = card or f"pm_card_of_{user}"  # a good card, the user's own
    return client.post("/api/stripe/subscriptions", {"price_id": price["id"], "payment_method_id": card},
                       content_type="application/json", **bearer(user))


def test_after_five_declines_a_user_gets_429_without_stripe_being_asked(client, fake_stripe, price):
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        declines = [_subscribe(client, "42", price, "pm_card_chargeDeclined") for _ in range(5)]
        assert [r.status_code for r in declines] == [402] * 5
        assert declines[-1].json()["error"]["code"] == "card_declined"
        asked = len(fake_stripe.requests)
        retry_after = _assert_429(_subscribe(client, "42", price), "payment_declines_per_user")
        assert 3500 <= retry_after <= 3600  # the first decline leaves the hour
        for path, body in (("/api/stripe/checkout-sessions", {"price_id": price["id"],
                                                              "success_url": "https://app.example.com/ok",
                                                              "cancel_url": "https://app.example.com/no"}),
                           ("/api/stripe/setup-intents", {})):
            response = client.post(path, body, content_type="application/json", **bearer("42"))
            _assert_429(response, "payment_declines_per_user")
        assert len(fake_stripe.requests) == asked  # no attempt reached Stripe
        assert _subscribe(client, "43", price).status_code == 201  # another user is not affected
        traveller.shift(3601)
        assert _subscribe(client, "42", price).status_code == 201


def test_successful_payments_do_not_count(client, fake_stripe, price, settings):
    settings.RATE_LIMIT_PAYMENT_DECLINES_PER_USER = "2/hour"
    for _ in range(3):
        assert _subscribe(client, "42", price).status_code == 201
    assert _subscribe(client, "42", price, "pm_card_chargeDeclined").status_code == 402
    assert _subscribe(client, "42", price).status_code == 201  # one decline: still allowed


# --- failed authentication per address ------------------------------------------------------------

def _list(client, auth: dict, address: str = UNTRUSTED):
    return client.get("/api/users/42/subscriptions", **{**auth, "REMOTE_ADDR": address})


def test_failed_authentication_from_an_address_is_429_then_even_with_a_valid_key(client, settings):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS = "5/minute"
    good, bad = with_key(api_key("read", "check")), with_key("bk_not-a-key")
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        failures = [_list(client, bad).status_code for _ in range(3)]
        failures += [client.get("/api/subscriptions/check/42", **bad).status_code,  # the check API counts too
                     client.get("/api/subscriptions/check/42", REMOTE_ADDR=UNTRUSTED).status_code]  # anonymous
        assert failures == [401] * 5
        _assert_429(_list(client, good), "auth_failures_per_address")  # refused before the key is looked at
        _assert_429(client.get("/api/subscriptions/check/42", **good), "auth_failures_per_address")
        assert _list(client, good, "203.0.113.8").status_code == 200  # another address
        assert client.get("/webhooks/stripe", REMOTE_ADDR=UNTRUSTED).status_code != 429  # only /api/
        traveller.shift(61)
        assert _list(client, good).status_code == 200


def test_trusted_networks_and_expired_tokens_are_not_counted(client, settings):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS = "3/minute"
    bad = with_key("bk_not-a-key")
    assert {_list(client, bad, "127.0.0.1").status_code for _ in range(6)} == {401}
    assert client.get("/api/subscriptions/check/42", REMOTE_ADDR="127.0.0.1").status_code == 200
    expired = [_list(client, bearer("42", expires_in=-60)) for _ in range(6)]  # apps refresh these
    assert {r.json()["error"]["code"] for r in expired} == {"token_expired"}
    assert _list(client, bearer("42")).status_code == 200


def test_another_process_refuses_the_address_after_its_first_failure(client, settings):
    """The counter is shared in Redis; each process remembers a full counter once it has seen one."""
    settings.RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS = "3/minute"
    good, bad = with_key(api_key("read")), with_key("bk_not-a-key")
    assert [_list(client, bad).status_code for _ in range(3)] == [401] * 3
    forget_refused_addresses()  # what a process that never saw this address knows
    assert _list(client, good).status_code == 200  # successes are not checked against Redis
    assert _list(client, bad).status_code == 401  # its failure finds the counter full...
    _assert_429(_list(client, good), "auth_failures_per_address")  # ...and refuses from now on


@pytest.mark.parametrize("redis_url", ["", "closed port"])
def test_without_redis_the_limits_are_off(client, settings, google, redis_url):
    """Fail open: no counter, no refusal (`make run` without Redis; Redis refusing connections)."""
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0" if redis_url else ""
    settings.RATE_LIMIT_VERIFY_PER_USER = "1/minute"
    settings.RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS = "1/minute"
    google.set_purchase("tok-42", _purchase("42"))
    assert {_verify(client, "tok-42", **bearer("42")).status_code for _ in range(3)} == {200}
    assert {_list(client, with_key("bk_not-a-key")).status_code for _ in range(3)} == {401}


# --- any DRF throttle answers the same way ----------------------------------------------------------

class _AlwaysRefused(BaseThrottle):
    def allow_request(self, request, view):
        return False

    def wait(self):
        return 0.3


class _ThrottledView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [_AlwaysRefused]

    def get(self, request):
        return Response({})


urlpatterns = [path("api/throttled", _ThrottledView.as_view())]


def test_a_drf_throttle_answers_429_in_the_error_shape_with_whole_seconds(client, settings):
    settings.ROOT_URLCONF = __name__
    response = client.get("/api/throttled")
    assert response["Retry-After"] == "1"  # 0.3 s rounded up: a client waiting 0 s would be refused again
    assert _assert_429(response, "throttle") == 1
