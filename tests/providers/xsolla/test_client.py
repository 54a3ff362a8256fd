"""client.py against the local fake of Xsolla's subscriptions API: the calls (paths, HTTP Basic auth,
bodies), Xsolla's errors as ours (404 → SubscriptionNotFound, other 4xx permanent, 5xx / 429 / timeouts /
no answer → StoreUnavailable), and the settings it needs."""

import base64

import pytest

from billing.providers.base import NotConfigured, PermanentError, StoreUnavailable, retry_may_help
from billing.providers.common import SubscriptionNotFound
from billing.providers.xsolla import client
from tests.helpers import closed_port

from .conftest import API_KEY, MERCHANT_ID, PROJECT_ID


def test_subscription_get_reads_the_subscription_with_basic_auth(fake_xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", amount=4.99, currency="EUR"))

    data = client.subscription_get("10")

    assert (data["id"], data["status"], data["charge_amount"], data["currency"]) == (10, "active", 4.99, "EUR")
    request = fake_xsolla.requests[-1]
    assert (request["method"], request["path"]) == ("GET", f"/projects/{PROJECT_ID}/subscriptions/10")
    assert request["authorization"] == "Basic " + base64.b64encode(f"{MERCHANT_ID}:{API_KEY}".encode()).decode()


def test_subscription_status_update_puts_the_status_and_returns_the_subscription(fake_xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))

    data = client.subscription_status_update(user_id="1234567", subscription_id="10", status="non_renewing")

    assert data["status"] == "non_renewing" and fake_xsolla.subscriptions["10"]["status"] == "non_renewing"
    request = fake_xsolla.requests[-1]
    assert (request["method"], request["path"], request["body"]) == (
        "PUT", f"/projects/{PROJECT_ID}/users/1234567/subscriptions/10", {"status": "non_renewing"})


def test_ids_are_quoted_into_the_path(fake_xsolla):
    with pytest.raises(SubscriptionNotFound):
        client.subscription_status_update(user_id="a/b c", subscription_id="10", status="canceled")
    assert fake_xsolla.requests[-1]["path"] == f"/projects/{PROJECT_ID}/users/a%2Fb%20c/subscriptions/10"


@pytest.mark.parametrize("failure", [500, 502, 503, 429, "timeout"])
def test_xsolla_failing_or_slow_is_store_unavailable(fake_xsolla, settings, failure):
    settings.XSOLLA_API_TIMEOUT_SECONDS = (1, 0.3)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    fake_xsolla.fail_next(failure)
    with pytest.raises(StoreUnavailable):
        client.subscription_get("10")
    assert client.subscription_get("10")["status"] == "active"  # and fine once it answers


def test_xsolla_unreachable_is_store_unavailable(xsolla, settings):
    settings.XSOLLA_PROJECT_ID, settings.XSOLLA_MERCHANT_ID, settings.XSOLLA_API_KEY = PROJECT_ID, MERCHANT_ID, "k"
    settings.XSOLLA_API_BASE = f"http://127.0.0.1:{closed_port()}/merchant/v2"
    with pytest.raises(StoreUnavailable, match="did not answer"):
        client.subscription_get("10")


def test_an_unknown_subscription_is_subscription_not_found(fake_xsolla):
    with pytest.raises(SubscriptionNotFound, match="not found") as exc:
        client.subscription_get("10")
    assert exc.value.status == 404 and isinstance(exc.value, PermanentError)
    # Xsolla addresses a PUT by user too: another user's subscription is not found either
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    with pytest.raises(SubscriptionNotFound):
        client.subscription_status_update(user_id="someone-else", subscription_id="10", status="canceled")
    assert fake_xsolla.subscriptions["10"]["status"] == "active"


def test_wrong_credentials_are_a_refusal_with_xsolla_s_message_retried_by_webhooks(fake_xsolla, settings):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    settings.XSOLLA_API_KEY = "wrong"
    with pytest.raises(PermanentError, match=r"401.*Invalid credentials") as exc:
        client.subscription_get("10")
    assert not isinstance(exc.value, SubscriptionNotFound)
    assert retry_may_help(exc.value)  # our key: webhook processing retries until it is fixed


def test_a_status_xsolla_refuses_is_permanent(fake_xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    with pytest.raises(PermanentError, match=r"422.*Invalid status"):
        client.subscription_status_update(user_id="1234567", subscription_id="10", status="freeze")


def test_without_api_credentials_nothing_is_sent_and_the_missing_settings_are_named(xsolla):
    assert client.is_configured() is False
    with pytest.raises(NotConfigured, match="XSOLLA_PROJECT_ID, XSOLLA_MERCHANT_ID, XSOLLA_API_KEY"):
        client.subscription_get("10")


def test_with_api_credentials_it_is_configured(fake_xsolla):
    assert client.is_configured() is True
