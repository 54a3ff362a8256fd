"""Voided-purchase notifications are Google's word only once its Voided Purchases API lists the order
(`purchases.voidedpurchases.list`, through google-api-python-client at the fake): a forged or mistaken
notification records no refund and changes no status."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from billing.models import StatusChange, Subscription, Transaction
from tests.helpers import drain

from .conftest import PACKAGE, push, retry, subscription_notification
from .test_events import purchase

pytestmark = pytest.mark.django_db

ORDER = "GPA.3375-6103-0197-44778"  # the order of the ACTIVE fixture purchase (its first renewal)


def voided(token: str, order_id: str = ORDER) -> dict:
    return {"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": str(int(timezone.now().timestamp() * 1000)),
            "voidedPurchaseNotification": {"purchaseToken": token, "orderId": order_id, "productType": 1,
                                           "refundType": 1}}


@pytest.fixture
def live(google):
    """User 42's subscription, live at Google and here."""
    google.set_purchase("tok-live", purchase())
    push(google, subscription_notification("tok-live", 4))
    sub = Subscription.objects.get(provider_subscription_id="tok-live")
    assert sub.status == "ACTIVE"
    return sub


def test_forged_void_of_a_valid_purchase_changes_nothing(google, live):
    history = StatusChange.objects.count()
    delivered = push(google, voided("tok-live"))
    assert delivered.response.status_code == 200  # stored: the push was authentic
    # Google does not list the order: looked for again for a while, nothing recorded meanwhile.
    assert delivered.event.status != "processed"
    assert "not listed by the Voided Purchases API" in delivered.event.error
    assert google.calls_of("voidedpurchases.list") and not google.calls_of("get")[1:]  # no re-read of the state
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        event = retry(delivered.event)
    assert event.status == "ignored" and "not confirmed by Google Play" in event.outcome
    live.refresh_from_db()
    assert live.status == "ACTIVE"
    assert not Transaction.objects.filter(kind="refund").exists()
    assert StatusChange.objects.count() == history


def test_void_naming_a_real_voided_order_of_another_purchase_confirms_nothing(google, live):
    google.void("tok-someone-else", ORDER)  # a genuinely voided order, but not of this purchase
    delivered = push(google, voided("tok-live"))
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        event = retry(delivered.event)
    assert event.status == "ignored"
    live.refresh_from_db()
    assert live.status == "ACTIVE" and not Transaction.objects.filter(kind="refund").exists()


def test_real_void_confirmed_by_google_is_refunded_and_revoked(google, live):
    state = purchase(subscriptionState="SUBSCRIPTION_STATE_EXPIRED")
    google.set_purchase("tok-live", state)  # Google revoked it with the refund
    google.void("tok-live", ORDER)
    delivered = push(google, voided("tok-live"))
    assert delivered.event.status == "processed", delivered.event.error
    live.refresh_from_db()
    assert live.status == "REVOKED"
    refund = Transaction.objects.get(provider_transaction_id=f"refund:{ORDER}")
    assert refund.kind == "refund" and refund.subscription == live


def test_a_void_listed_only_after_a_while_is_applied_on_a_retry(google, live):
    delivered = push(google, voided("tok-live"))
    assert delivered.event.status != "processed"
    google.void("tok-live", ORDER)  # Google's list catches up
    event = retry(delivered.event)
    assert event.status == "processed", event.error
    assert Transaction.objects.filter(provider_transaction_id=f"refund:{ORDER}").exists()


def test_voided_list_is_paged(google, live):
    for i in range(1001):  # one full page of other orders first
        google.void(f"tok-{i}", f"GPA.0000-0000-0000-{i:05d}")
    google.void("tok-live", ORDER)
    assert push(google, voided("tok-live")).event.status == "processed"
    assert [c["query"].get("token") for c in google.calls_of("voidedpurchases.list")] == [None, "1000"]
    drain()
