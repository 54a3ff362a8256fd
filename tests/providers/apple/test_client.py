"""The App Store Server API client (client.py) against the local fake: the calls it makes, and what
the store's failures become, for the apps (the verify API's answers) and for our own code (not found,
unavailable, refused)."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Subscription
from billing.providers.apple import client as appstore
from billing.providers.base import NotConfigured, PermanentError, StoreUnavailable
from billing.providers.common import SubscriptionNotFound
from tests.fakes.apple import AppleChain, notification_claims, renewal_claims, transaction_claims
from tests.helpers import closed_port

OTID = "2000000000000100"


def verify(client, service_auth, **body):
    return client.post("/api/subscriptions/verify", data={"provider": "apple", "user_id": "42", **body},
                       content_type="application/json", **service_auth("verify"))


# --- What the apps see of the store's failures (POST /api/subscriptions/verify) ------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("status", "answer"), [
    (503, None), (500, {"errorCode": 5000000, "errorMessage": "An unknown error occurred."}),
    (429, {"errorCode": 4290000, "errorMessage": "Rate limit exceeded."}),
    (404, {"errorCode": 4040006, "errorMessage": "Original transaction id not found. Please try again."}),
])
def test_store_failures_are_502(apple_settings, client, service_auth, fake_appstore, status, answer):
    fake_appstore.script.append((status, answer))
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "store_unavailable"
    assert not Subscription.objects.exists()


@pytest.mark.django_db
def test_unreachable_store_is_502(apple_settings, client, service_auth, fake_appstore):
    fake_appstore.stop()
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 502


@pytest.mark.django_db
def test_refused_credentials_are_502_not_the_apps_fault(apple_settings, apple_chain, client, service_auth,
                                                        fake_appstore):
    txn = transaction_claims(original_transaction_id=OTID)
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    apple_settings.APPLE_ISSUER_ID = "someone-else"
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 502
    # The store's (retryable) failure, not the app's; the App Store's text is logged, not answered.
    assert response.json()["error"]["code"] == "store_unavailable"
    assert "401" not in response.json()["error"]["message"]


# --- The calls ------------------------------------------------------------------------------------

def test_subscription_get_answers_the_signed_statuses(apple_settings, apple_chain, fake_appstore):
    txn = transaction_claims(original_transaction_id=OTID, transaction_id="2000000000000105")
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn), status=4)
    response = appstore.subscription_get("2000000000000105", apple_environment="Sandbox")
    (item,) = response.data[0].lastTransactions
    assert (item.rawStatus, item.originalTransactionId) == (4, OTID)
    assert item.signedTransactionInfo.count(".") == 2 and item.signedRenewalInfo.count(".") == 2
    request = fake_appstore.requests[-1]
    assert (request["method"], request["path"]) == ("GET", "/inApps/v1/subscriptions/2000000000000105")
    assert request["token"]["iss"] == apple_settings.APPLE_ISSUER_ID


def test_notification_history_get_asks_for_one_page(apple_settings, apple_chain, fake_appstore):
    fake_appstore.history = [apple_chain.sign(notification_claims("TEST", status=None)) for _ in range(3)]
    fake_appstore.page_size = 2
    until = timezone.now()
    since = until - timedelta(days=1)
    first = appstore.notification_history_get(since=since, until=until, only_failures=True, pagination_token=None,
                                              apple_environment="Sandbox")
    assert (len(first.notificationHistory), first.hasMore, first.paginationToken) == (2, True, "2")
    last = appstore.notification_history_get(since=since, until=until, only_failures=False, pagination_token="2",
                                             apple_environment="Sandbox")
    assert (len(last.notificationHistory), last.hasMore) == (1, False)
    asked = [r for r in fake_appstore.requests if r["path"] == "/inApps/v1/notifications/history"]
    assert [r["query"].get("paginationToken") for r in asked] == [None, ["2"]]
    assert asked[0]["body"] == {"startDate": int(since.timestamp() * 1000), "endDate": int(until.timestamp() * 1000),
                                "onlyFailures": True}
    assert "onlyFailures" not in asked[1]["body"]


# --- Its errors, as ours ------------------------------------------------------------------------------

def test_an_unknown_transaction_is_subscription_not_found(apple_settings):
    with pytest.raises(SubscriptionNotFound) as exc:
        appstore.subscription_get("2000000000009999", apple_environment="Sandbox")
    assert exc.value.status == 404
    assert isinstance(exc.value, PermanentError)  # never retried
    assert "4040010" in str(exc.value) and "Sandbox" in str(exc.value)


@pytest.mark.parametrize(("status", "answer", "says"), [
    (404, {"errorCode": 4040006, "errorMessage": "Original transaction id not found. Please try again."}, "failed"),
    (429, {"errorCode": 4290000, "errorMessage": "Rate limit exceeded."}, "failed"),
    (502, None, "failed"),
])
def test_what_a_retry_may_fix_is_store_unavailable(apple_settings, fake_appstore, status, answer, says):
    fake_appstore.script.append((status, answer))
    with pytest.raises(StoreUnavailable, match=says) as exc:
        appstore.subscription_get(OTID, apple_environment="Sandbox")
    assert not isinstance(exc.value, SubscriptionNotFound)


def test_a_request_apple_will_never_accept_is_permanent(apple_settings, fake_appstore):
    fake_appstore.script.append((400, {"errorCode": 4000000, "errorMessage": "Bad request."}))
    with pytest.raises(PermanentError, match="refused the request") as exc:
        appstore.subscription_get(OTID, apple_environment="Sandbox")
    assert not isinstance(exc.value, SubscriptionNotFound)


def test_refused_credentials_are_logged_as_our_configuration(apple_settings, caplog):
    apple_settings.APPLE_ISSUER_ID = "someone-else"
    with caplog.at_level(logging.ERROR), pytest.raises(StoreUnavailable, match="credentials"):
        appstore.subscription_get(OTID, apple_environment="Sandbox")
    assert "APPLE_ISSUER_ID" in caplog.text


def test_an_unreachable_store_is_unavailable(apple_settings):
    apple_settings.APPLE_API_BASE_URL = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(StoreUnavailable, match="unreachable"):
        appstore.subscription_get(OTID, apple_environment="Sandbox")


def test_missing_api_settings_and_unknown_environments(apple_settings):
    with pytest.raises(PermanentError, match="no Xcode environment"):
        appstore.subscription_get(OTID, apple_environment="Xcode")
    with pytest.raises(NotConfigured, match="APPLE_ALLOW_UNSIGNED_ENVIRONMENTS"):
        appstore.subscription_get(OTID, apple_environment="LocalTesting")  # DEBUG is off
    apple_settings.APPLE_PRIVATE_KEY_FILE = ""
    with pytest.raises(NotConfigured, match="APPLE_PRIVATE_KEY_FILE"):
        appstore.subscription_get(OTID, apple_environment="Sandbox")


def test_a_forged_answer_is_never_trusted(apple_settings, fake_appstore, adapter):
    """Our own call answered with data that does not verify (not our roots): the store is unavailable."""
    forger = AppleChain(name="Forger")
    txn = transaction_claims(original_transaction_id=OTID)
    fake_appstore.add_subscription(forger, txn, renewal_claims(txn))
    with pytest.raises(StoreUnavailable, match="not verified"):
        adapter.verify({"transaction_id": OTID}, user_id="42")
