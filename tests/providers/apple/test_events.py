"""Every notification type and subtype through the real pipeline (POST /webhooks/apple, then the
worker's drain) → the subscription's state, its transactions and the event stream; with our own
chain, and with Apple's genuine sandbox lifecycles (tests/fixtures/apple/SOURCES.md)."""

from datetime import UTC, datetime

import pytest

from billing.models import StatusChange, Subscription, Transaction
from billing.providers.apple.mapping import app_account_token_for_user
from billing.statuses import Status
from tests.factories import SubscriberFactory
from tests.fakes.apple import (
    REAL_ORIGINAL_TRANSACTION_ID,
    notification_claims,
    now_ms,
    real_sequence,
    renewal_claims,
    signed_body,
    transaction_claims,
)
from tests.helpers import Delivered, deliver, stream_events
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

OTID = "2000000000000001"
DAY = 86_400_000


@pytest.fixture
def send(apple_settings, apple_chain):
    """Sign a notification about subscription OTID and deliver it; returns the delivery."""
    def send(kind, subtype=None, *, txn=None, renewal=None, status=1, signed_ms=None, **data) -> Delivered:
        txn = txn if txn is not None else transaction_claims(original_transaction_id=OTID)
        renewal = renewal if renewal is not None else renewal_claims(txn)
        claims = notification_claims(kind, subtype, chain=apple_chain, transaction=txn or None,
                                     renewal=renewal or None, status=status, signed_ms=signed_ms, **data)
        delivered = deliver("apple", signed_body(apple_chain, claims))
        assert delivered.response.status_code == 200, delivered.response.content
        return delivered
    return send


def subscription(original_transaction_id: str) -> Subscription:
    return Subscription.objects.get(provider="apple", provider_subscription_id=original_transaction_id)


def ignored(delivered: Delivered) -> str:
    """The reason an event changed nothing (it was stored, processed as ignored and touched nothing)."""
    event = delivered.event
    assert event.status == WebhookEvent.Status.IGNORED, event.outcome
    assert delivered.subscriptions == []
    assert event.outcome.startswith("ignored: ")
    return event.outcome.removeprefix("ignored: ")


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def test_initial_buy_is_active_with_expiry_product_and_purchase(send):
    txn = transaction_claims(original_transaction_id=OTID, price=9990, currency="USD")
    delivered = send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    assert delivered.event.status == WebhookEvent.Status.PROCESSED
    sub = subscription(OTID)
    assert delivered.subscription == sub
    assert sub.status == Status.ACTIVE
    assert sub.expires_at == at(txn["expiresDate"])
    assert sub.started_at == at(txn["originalPurchaseDate"])
    assert sub.store_product_id == "com.example.premium.monthly"
    assert (sub.amount_minor, sub.currency, sub.auto_renew, sub.environment) == (999, "USD", True, "sandbox")
    purchase = Transaction.objects.get(provider_transaction_id=OTID)
    assert (purchase.kind, purchase.amount_minor, purchase.currency) == ("purchase", 999, "USD")


def test_initial_buy_with_a_free_trial_offer_is_trial(send):
    txn = transaction_claims(original_transaction_id=OTID, price=0, offerType=1, offerDiscountType="FREE_TRIAL",
                             offerPeriod="P1W")
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    assert subscription(OTID).status == Status.TRIAL


def test_resubscribe_after_expiry_is_active_again(send):
    send("EXPIRED", "VOLUNTARY", status=2)
    assert subscription(OTID).status == Status.EXPIRED
    txn = transaction_claims(original_transaction_id=OTID, transaction_id="2000000000000009")
    send("SUBSCRIBED", "RESUBSCRIBE", txn=txn)
    assert subscription(OTID).status == Status.ACTIVE


@pytest.mark.parametrize("subtype", [None, "BILLING_RECOVERY"])
def test_did_renew_extends_and_records_the_renewal(send, subtype):
    send("SUBSCRIBED", "INITIAL_BUY")
    purchase = now_ms() - 1000
    txn = transaction_claims(original_transaction_id=OTID, transaction_id="2000000000000002", reason="RENEWAL",
                             purchase_ms=purchase, expires_ms=purchase + 30 * DAY)
    send("DID_RENEW", subtype, txn=txn)
    sub = subscription(OTID)
    assert sub.status == Status.ACTIVE
    assert sub.expires_at == at(purchase + 30 * DAY)
    assert Transaction.objects.get(provider_transaction_id="2000000000000002").kind == "renewal"


def test_auto_renew_disabled_is_canceled_until_expiry_then_enabled_is_active(send):
    txn = transaction_claims(original_transaction_id=OTID)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    send("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED", txn=txn,
         renewal=renewal_claims(txn, autoRenewStatus=0))
    sub = subscription(OTID)
    assert (sub.status, sub.auto_renew, sub.expires_at) == (Status.CANCELED, False, at(txn["expiresDate"]))
    assert sub.canceled_at is not None
    send("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED", txn=txn, renewal=renewal_claims(txn))
    assert subscription(OTID).status == Status.ACTIVE


def test_upgrade_applies_at_once_and_downgrade_at_renewal(send):
    send("SUBSCRIBED", "INITIAL_BUY")
    upgraded = transaction_claims(original_transaction_id=OTID, transaction_id="2000000000000003",
                                  product_id="com.example.premium.yearly", price=99990)
    send("DID_CHANGE_RENEWAL_PREF", "UPGRADE", txn=upgraded)
    sub = subscription(OTID)
    assert (sub.status, sub.store_product_id) == (Status.ACTIVE, "com.example.premium.yearly")

    downgrade = renewal_claims(upgraded, autoRenewProductId="com.example.premium.monthly", renewalPrice=9990)
    send("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE", txn=upgraded, renewal=downgrade)
    sub = subscription(OTID)
    assert (sub.status, sub.store_product_id) == (Status.ACTIVE, "com.example.premium.yearly")  # until renewal
    assert sub.upcoming_amount_minor == 999
    assert sub.raw_snapshot["renewal"]["autoRenewProductId"] == "com.example.premium.monthly"


@pytest.mark.parametrize("subtype", [None, "INITIAL_BUY", "RESUBSCRIBE", "UPGRADE", "DOWNGRADE"])
def test_offer_redeemed(send, subtype):
    txn = transaction_claims(original_transaction_id=OTID, offerType=3, offerIdentifier="SPRING",
                             offerDiscountType="PAY_UP_FRONT", price=4990)
    send("OFFER_REDEEMED", subtype, txn=txn)
    assert subscription(OTID).status == Status.ACTIVE


def test_failed_renewal_with_grace_is_on_grace_until_the_grace_end(send):
    txn = transaction_claims(original_transaction_id=OTID)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    grace_end = txn["expiresDate"] + 16 * DAY
    send("DID_FAIL_TO_RENEW", "GRACE_PERIOD", txn=txn, status=4,
         renewal=renewal_claims(txn, isInBillingRetryPeriod=True, gracePeriodExpiresDate=grace_end))
    sub = subscription(OTID)
    assert sub.status == Status.ON_GRACE
    assert sub.grace_until == at(grace_end)
    assert sub.access_ends_at == at(grace_end)


def test_failed_renewal_without_grace_is_on_hold(send):
    txn = transaction_claims(original_transaction_id=OTID)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    send("DID_FAIL_TO_RENEW", None, txn=txn, status=3, renewal=renewal_claims(txn, isInBillingRetryPeriod=True))
    assert subscription(OTID).status == Status.ON_HOLD


def test_grace_period_expired_is_on_hold_not_expired(send):
    txn = transaction_claims(original_transaction_id=OTID)
    send("DID_FAIL_TO_RENEW", "GRACE_PERIOD", txn=txn, status=4,
         renewal=renewal_claims(txn, gracePeriodExpiresDate=txn["expiresDate"] + DAY))
    send("GRACE_PERIOD_EXPIRED", None, txn=txn, status=3, renewal=renewal_claims(txn, isInBillingRetryPeriod=True))
    assert subscription(OTID).status == Status.ON_HOLD


@pytest.mark.parametrize("subtype", ["VOLUNTARY", "BILLING_RETRY", "PRICE_INCREASE", "PRODUCT_NOT_FOR_SALE", None])
def test_expired_all_subtypes(send, subtype):
    txn = transaction_claims(original_transaction_id=OTID)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    send("EXPIRED", subtype, txn=txn, status=2, renewal=renewal_claims(txn, autoRenewStatus=0, expirationIntent=1))
    sub = subscription(OTID)
    assert sub.status == Status.EXPIRED
    assert sub.ended_at == at(txn["expiresDate"])


def test_refund_of_the_current_period_revokes_and_records_the_refund(send):
    txn = transaction_claims(original_transaction_id=OTID, price=9990)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    revoked_ms = now_ms() - 500
    refunded = {**txn, "revocationDate": revoked_ms, "revocationReason": 0, "revocationType": "REFUND_FULL"}
    send("REFUND", None, txn=refunded, status=5)
    sub = subscription(OTID)
    assert sub.status == Status.REVOKED
    assert sub.ended_at == at(revoked_ms)
    refund = Transaction.objects.get(provider_transaction_id=f"{OTID}:refund")
    assert (refund.kind, refund.amount_minor, refund.occurred_at) == ("refund", 999, at(revoked_ms))


def test_prorated_refund_records_the_refunded_share(send):
    txn = transaction_claims(original_transaction_id=OTID, price=9990)
    refunded = {**txn, "revocationDate": now_ms(), "revocationReason": 1, "revocationType": "REFUND_PRORATED",
                "revocationPercentage": 50000}
    send("REFUND", None, txn=refunded, status=5)
    assert Transaction.objects.get(provider_transaction_id=f"{OTID}:refund").amount_minor == 500  # 9.99 / 2


def test_refund_declined_changes_nothing(send):
    send("SUBSCRIBED", "INITIAL_BUY")
    send("REFUND_DECLINED")
    assert subscription(OTID).status == Status.ACTIVE
    # no status change (a `state` row may record the dates the notification carries, for finance)
    assert StatusChange.objects.filter(subscription__provider_subscription_id=OTID, kind="status").count() == 1


def test_refund_reversed_restores_access(send):
    txn = transaction_claims(original_transaction_id=OTID)
    send("REFUND", None, txn={**txn, "revocationDate": now_ms(), "revocationReason": 0}, status=5)
    assert subscription(OTID).status == Status.REVOKED
    send("REFUND_REVERSED", None, txn=txn, status=1)
    assert subscription(OTID).status == Status.ACTIVE


def test_revoke_of_a_family_member_revokes_their_subscription_and_records_no_money(send):
    member = transaction_claims(original_transaction_id="2000000000000777", inAppOwnershipType="FAMILY_SHARED")
    send("SUBSCRIBED", "INITIAL_BUY", txn=member)
    assert subscription("2000000000000777").status == Status.ACTIVE
    revoked = {**member, "revocationDate": now_ms(), "revocationType": "FAMILY_REVOKE"}
    send("REVOKE", None, txn=revoked, status=5)
    assert subscription("2000000000000777").status == Status.REVOKED
    assert not Transaction.objects.exists()  # the organizer pays (on the organizer's subscription)


def test_renewal_extended_moves_the_expiry(send):
    txn = transaction_claims(original_transaction_id=OTID)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    extended = {**txn, "expiresDate": txn["expiresDate"] + 7 * DAY}
    send("RENEWAL_EXTENDED", None, txn=extended)
    assert subscription(OTID).expires_at == at(txn["expiresDate"] + 7 * DAY)


def test_renewal_extension_summary_and_failure_are_recorded_without_effect(apple_settings, apple_chain, send):
    claims = notification_claims("RENEWAL_EXTENSION", "SUMMARY", chain=apple_chain, status=None)
    claims["summary"] = {**claims.pop("data"), "requestIdentifier": "req-1", "succeededCount": 10,
                         "failedCount": 2, "productId": "com.example.premium.monthly"}
    reason = ignored(deliver("apple", signed_body(apple_chain, claims)))
    assert "req-1" in reason and "10 extended" in reason

    assert "failed" in ignored(send("RENEWAL_EXTENSION", "FAILURE"))


@pytest.mark.parametrize("subtype", ["PENDING", "ACCEPTED"])
def test_price_increase_changes_no_status(send, subtype):
    send("SUBSCRIBED", "INITIAL_BUY")
    txn = transaction_claims(original_transaction_id=OTID)
    send("PRICE_INCREASE", subtype, txn=txn, renewal=renewal_claims(txn, priceIncreaseStatus=1, renewalPrice=12990))
    sub = subscription(OTID)
    assert sub.status == Status.ACTIVE
    assert sub.upcoming_amount_minor == 1299


def test_consumption_request_is_recorded_for_support_without_effect(send):
    send("SUBSCRIBED", "INITIAL_BUY")
    reason = ignored(send("CONSUMPTION_REQUEST", consumptionRequestReason="UNINTENDED_PURCHASE"))
    assert "consumption request recorded for support" in reason
    assert "UNINTENDED_PURCHASE" in reason
    assert subscription(OTID).status == Status.ACTIVE


def test_test_notification_has_no_effect(send):
    assert ignored(send("TEST", txn={}, renewal={}, status=None)) == "test notification (no effect)"


def test_unknown_type_and_subtype_are_recorded_not_crashed_on(send):
    reason = ignored(send("SOMETHING_APPLE_ADDS_LATER", "BRAND_NEW"))
    assert "unknown notification type SOMETHING_APPLE_ADDS_LATER/BRAND_NEW" in reason
    reason = ignored(send("ONE_TIME_CHARGE", txn=transaction_claims(original_transaction_id="5", type="Consumable")))
    assert "not a subscription" in reason


def test_older_notification_does_not_undo_a_newer_one(send):
    txn = transaction_claims(original_transaction_id=OTID)
    send("EXPIRED", "VOLUNTARY", txn=txn, status=2)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn, signed_ms=now_ms() - 60_000)  # delivered late
    assert subscription(OTID).status == Status.EXPIRED


# --- Who bought -------------------------------------------------------------------------------

def test_integer_app_account_token_links_the_user_id(send):
    token = app_account_token_for_user(4242)
    assert token == "00001092-0000-0000-0000-000000000000"
    send("SUBSCRIBED", "INITIAL_BUY", txn=transaction_claims(original_transaction_id=OTID, app_account_token=token))
    sub = subscription(OTID)
    assert sub.subscriber.external_id == "4242"
    assert str(sub.subscriber.apple_app_account_token) == token


def test_other_uuid_finds_the_subscriber_by_stored_token(send):
    token = "7e3fb20b-4cdb-47cc-936d-99d65f608138"
    subscriber = SubscriberFactory(external_id="user-abc", apple_app_account_token=token)
    txn = transaction_claims(original_transaction_id=OTID, app_account_token=token)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    assert subscription(OTID).subscriber == subscriber


def test_no_token_or_an_unknown_one_is_an_orphan(send):
    txn = transaction_claims(original_transaction_id=OTID, app_account_token="7e3fb20b-4cdb-47cc-936d-99d65f608138")
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    assert subscription(OTID).subscriber is None
    send("SUBSCRIBED", "INITIAL_BUY", txn=transaction_claims(original_transaction_id="2000000000000002"))
    assert subscription("2000000000000002").subscriber is None


def test_sandbox_is_recorded_without_access_when_the_deployment_forbids_it(send, apple_settings):
    apple_settings.APPLE_ENVIRONMENT = "Production"
    apple_settings.APPLE_ALLOW_SANDBOX = False
    txn = transaction_claims(original_transaction_id=OTID, app_account_token=app_account_token_for_user(77))
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    sub = subscription(OTID)
    assert (sub.environment, sub.status, sub.subscriber.external_id) == ("sandbox", Status.INACTIVE, "77")
    assert "APPLE_ALLOW_SANDBOX is off" in sub.status_changes.get().note  # support sees why

    apple_settings.APPLE_ALLOW_SANDBOX = True  # the store's setting: the next notification grants access
    send("DID_RENEW", txn=transaction_claims(original_transaction_id=OTID, transaction_id="2000000000000009",
                                             app_account_token=app_account_token_for_user(77)))
    assert subscription(OTID).status == Status.ACTIVE


def test_end_to_end_purchase_reaches_the_stream_for_the_user(send, django_capture_on_commit_callbacks):
    txn = transaction_claims(original_transaction_id="2000000000000555",
                             app_account_token=app_account_token_for_user(77))
    with django_capture_on_commit_callbacks(execute=True):  # the stream is written once the change commits
        send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    assert [(e["userId"], e["newStatus"], e["provider"], e["subscriptionId"], e["environment"])
            for e in stream_events()] == [("77", "ACTIVE", "apple", "2000000000000555", "sandbox")]


# --- Apple's real sandbox lifecycles ---------------------------------------------------------------

def test_lifecycle_1_upgrade_downgrade_auto_renew_off_expiry(real_apple_settings):
    seen = []
    for body in real_sequence("seq1"):
        deliver("apple", body)
        seen.append(subscription(REAL_ORIGINAL_TRANSACTION_ID).status)
    assert seen == [Status.ACTIVE,  # RESUBSCRIBE (3 months)
                    Status.ACTIVE,  # UPGRADE to the weekly product, at once
                    Status.CANCELED,  # auto-renew off
                    Status.ACTIVE,  # DOWNGRADE queued, auto-renew back on
                    Status.ACTIVE,  # downgrade cancelled
                    Status.CANCELED,  # auto-renew off
                    Status.EXPIRED]  # EXPIRED/VOLUNTARY
    sub = subscription(REAL_ORIGINAL_TRANSACTION_ID)
    assert sub.store_product_id == "com.getsession.org.pro_sub"
    assert sub.auto_renew is False
    assert sub.expires_at == datetime(2025, 10, 6, 5, 19, 30, tzinfo=UTC)
    assert sub.environment == "sandbox"
    assert sub.subscriber is None  # the captures carry no appAccountToken: an orphan for support
    money = {t.provider_transaction_id: (t.kind, t.amount_minor, t.currency) for t in Transaction.objects.all()}
    assert money == {"2000001027701898": ("purchase", 599, "AUD"),  # 5990 milli-units = 5.99 AUD
                     "2000001027701928": ("purchase", 199, "AUD")}


def test_lifecycle_2_refund_of_an_earlier_period_keeps_the_current_one(real_apple_settings):
    deliveries = [deliver("apple", body) for body in real_sequence("seq2")]
    consumption = ignored(deliveries[1])
    assert "consumption request recorded for support" in consumption
    assert "2000001032604840" in consumption

    sub = subscription(REAL_ORIGINAL_TRANSACTION_ID)
    # The refunded transaction (2025-10-13) is not the current period (2025-10-16): access stays.
    assert sub.status == Status.ACTIVE
    assert sub.store_product_id == "com.getsession.org.pro_sub_3_months"
    assert sub.expires_at == datetime(2025, 10, 16, 5, 25, 14, tzinfo=UTC)
    refund = Transaction.objects.get(provider_transaction_id="2000001032604840:refund")
    assert (refund.kind, refund.amount_minor, refund.currency) == ("refund", 199, "AUD")
    assert refund.occurred_at == datetime(2025, 10, 16, 5, 19, 59, tzinfo=UTC)
    assert Transaction.objects.get(provider_transaction_id="2000001032604840").kind == "purchase"


def test_replaying_both_lifecycles_through_the_webhook_endpoint(real_apple_settings):
    bodies = real_sequence("seq1") + real_sequence("seq2")
    for body in bodies:
        response = deliver("apple", body).response
        assert response.status_code == 200, response.content
    sub = subscription(REAL_ORIGINAL_TRANSACTION_ID)
    assert sub.status == Status.ACTIVE
    assert sub.store_product_id == "com.getsession.org.pro_sub_3_months"
    events = WebhookEvent.objects.filter(provider="apple")
    assert events.count() == len(bodies)
    consumption = events.get(event_type="CONSUMPTION_REQUEST")
    assert consumption.status == WebhookEvent.Status.IGNORED
    assert "consumption request recorded for support" in consumption.outcome
    assert REAL_ORIGINAL_TRANSACTION_ID in consumption.store_ids_text  # support finds it by the subscription id
    assert events.filter(status=WebhookEvent.Status.PROCESSED).count() == len(bodies) - 1

    # A redelivery (same notificationUUID) is answered, not processed twice.
    again = deliver("apple", bodies[-1])
    assert again.response.status_code == 200
    assert again.response.json()["status"] == "duplicate"
    assert again.event is None
    assert events.count() == len(bodies)
