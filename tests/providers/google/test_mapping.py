"""The pure mapping functions: the notification (kind, type name, store ids, time) and a purchase
(SubscriptionPurchaseV2) → Snapshot."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from billing.providers.base import PermanentError
from billing.providers.google import mapping
from tests.fakes.google import pubsub_body

from .conftest import PACKAGE, load_sequence, subscription_notification

OBSERVED = datetime(2025, 10, 11, tzinfo=UTC)
FIRST = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]["subscriptionPurchaseV2"]


def test_event_time_string_is_parsed():
    data = {"eventTimeMillis": "1503349566168"}
    assert mapping.event_time(data).year == 2017
    assert mapping.event_time({"eventTimeMillis": "x"}) is None
    assert mapping.event_time({}) is None
    assert json.loads(base64.b64decode(json.loads(pubsub_body(data))["message"]["data"])) == data


@pytest.mark.parametrize(("notification", "kind", "event_type"), [
    (subscription_notification("tok", 4), mapping.SUBSCRIPTION, "SUBSCRIPTION_PURCHASED"),
    (subscription_notification("tok", "x"), mapping.SUBSCRIPTION, "SUBSCRIPTION_UNKNOWN"),
    ({"packageName": PACKAGE, "voidedPurchaseNotification": {"orderId": "GPA.1"}}, mapping.VOIDED_PURCHASE,
     "VOIDED_PURCHASE"),
    ({"packageName": PACKAGE, "oneTimeProductNotification": {"sku": "coins"}}, mapping.ONE_TIME_PRODUCT,
     "ONE_TIME_PRODUCT_NOTIFICATION"),
    ({"packageName": PACKAGE, "testNotification": {}}, mapping.TEST, "TEST_NOTIFICATION"),
    ({"packageName": PACKAGE, "pendingRefundReviewNotification": {}}, mapping.UNKNOWN, "UNKNOWN_NOTIFICATION"),
])
def test_notification_kind_and_event_type(notification, kind, event_type):
    assert mapping.notification_kind(notification) == kind
    assert mapping.event_type(notification) == event_type


def test_store_ids_are_what_support_searches_by():
    voided = {"voidedPurchaseNotification": {"purchaseToken": "tok-v", "orderId": "GPA.1", "productType": 1}}
    assert mapping.store_ids(voided) == ("tok-v", "GPA.1")
    assert mapping.store_ids({"testNotification": {}}) == ()


def test_captured_purchase_maps_to_a_snapshot():
    who = mapping.Who(user_id="42", identity_value="42")
    snap = mapping.subscription_snapshot("tok-1", FIRST, observed_at=OBSERVED, who=who)
    assert (snap.provider, snap.provider_subscription_id, snap.status) == ("google", "tok-1", "ACTIVE")
    assert snap.store_product_id.startswith("session_pro:session-pro-")
    assert (snap.amount_minor, snap.currency, snap.auto_renew) == (1699, "AUD", True)
    assert snap.environment == "sandbox"  # testPurchase
    assert (snap.user_id, snap.identity_field, snap.identity_value) == ("42", "google_obfuscated_account_id", "42")
    started = datetime.fromisoformat(FIRST["startTime"].replace("Z", "+00:00"))
    assert snap.started_at == started and snap.acknowledgement_due_at == started + timedelta(days=3)
    (purchase,) = snap.transactions
    assert purchase.kind == "purchase" and purchase.occurred_at == started and purchase.amount_minor == 1699


def test_revoked_purchase_that_lapsed_reads_revoked():
    expired = {**FIRST, "subscriptionState": "SUBSCRIPTION_STATE_EXPIRED"}
    assert mapping.subscription_snapshot("t", expired, observed_at=OBSERVED).status == "EXPIRED"
    revoked = mapping.subscription_snapshot("t", expired, observed_at=OBSERVED, revoked=True)
    assert revoked.status == "REVOKED" and revoked.ended_at == OBSERVED


def test_unknown_state_is_a_permanent_error():
    with pytest.raises(PermanentError, match="UNSPECIFIED"):
        mapping.subscription_snapshot("t", {**FIRST, "subscriptionState": "SUBSCRIPTION_STATE_UNSPECIFIED"},
                                      observed_at=OBSERVED)


@pytest.mark.parametrize(("money", "minor"), [
    ({"currencyCode": "AUD", "units": "16", "nanos": 990000000}, 1699),
    ({"currencyCode": "jpy", "units": "1200"}, 1200),  # no minor unit; the code is read in any case
    ({"currencyCode": "KWD", "units": "1", "nanos": 250000000}, 1250),
])
def test_recurring_price_in_minor_units(money, minor):
    purchase = json.loads(json.dumps(FIRST))
    purchase["lineItems"][0]["autoRenewingPlan"]["recurringPrice"] = money
    snap = mapping.subscription_snapshot("t", purchase, observed_at=OBSERVED)
    assert snap.amount_minor == minor and snap.currency == money["currencyCode"].upper()


def test_pending_upgrade_replaces_nothing_yet():
    pending = {**FIRST, "subscriptionState": "SUBSCRIPTION_STATE_PENDING", "linkedPurchaseToken": "old"}
    assert mapping.subscription_snapshot("new", pending, observed_at=OBSERVED).replaces is None
    active = {**FIRST, "linkedPurchaseToken": "old"}
    assert mapping.subscription_snapshot("new", active, observed_at=OBSERVED).replaces == "old"


def test_voided_purchase_google_forgot_is_revoked_at_the_event_time():
    refund = mapping.refund_transaction(order_id="GPA.1", occurred_at=OBSERVED, amount_minor=None, currency="",
                                        refund_type=2)
    snap = mapping.voided_snapshot("tok", at=OBSERVED, transactions=(refund,))
    assert (snap.status, snap.observed_at, snap.ended_at) == ("REVOKED", OBSERVED, OBSERVED)
    assert snap.transactions[0].provider_transaction_id == "refund:GPA.1" and snap.transactions[0].kind == "refund"
