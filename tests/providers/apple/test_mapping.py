"""The pure mapping of verified App Store data (mapping.py): prices in milli-units, who bought, what a
notification's payload says, the API's statuses and the legacy receipt. Everything through the pipeline
is in test_events.py."""

import base64
import json
from datetime import UTC, datetime

import pytest

from billing.providers.apple import mapping
from billing.providers.common import minor_from_milli
from billing.statuses import Status
from tests.fakes.apple import AppleChain, app_receipt, renewal_claims, transaction_claims


@pytest.mark.parametrize(("milli", "currency", "minor"), [
    (9990, "USD", 999), (1990, "AUD", 199), (4995, "EUR", 500), (1200000, "JPY", 1200), (120000, "KRW", 120),
    (2990, "KWD", 2990), (0, "USD", 0), (None, "USD", None)])
def test_prices_in_milli_units_to_minor_units(milli, currency, minor):
    assert minor_from_milli(milli, currency) == minor


def test_integer_token_round_trip():
    assert mapping.app_account_token_for_user(1) == "00000001-0000-0000-0000-000000000000"
    assert mapping.user_link(mapping.app_account_token_for_user(4242))["user_id"] == "4242"


@pytest.mark.parametrize(("token", "link"), [
    ("7E3FB20B-4CDB-47CC-936D-99D65F608138", {"identity_field": "apple_app_account_token",
                                              "identity_value": "7e3fb20b-4cdb-47cc-936d-99d65f608138"}),
    ("not-a-uuid", {}),
    (None, {}),
])
def test_any_other_token_is_the_subscribers_stored_identity(token, link):
    assert mapping.user_link(token) == link


def _payload(kind, subtype=None, *, transaction=None, environment="sandbox", **claims) -> dict:
    return {"notification": {"notificationType": kind, **({"subtype": subtype} if subtype else {}), **claims},
            "transaction": transaction, "renewal": renewal_claims(transaction) if transaction else None,
            "environment": environment}


def test_the_stored_type_is_type_and_subtype():
    assert mapping.notification_label({"notificationType": "DID_RENEW"}) == "DID_RENEW"
    assert mapping.notification_label({"notificationType": "EXPIRED", "subtype": "VOLUNTARY"}) == "EXPIRED/VOLUNTARY"
    assert mapping.unknown_type_reason(_payload("")) == "unknown notification type (none): recorded, not acted on"


def test_a_subscription_notification_without_a_usable_transaction_says_why():
    problem = mapping.subscription_notification_problem
    assert problem(_payload("DID_RENEW")) == "DID_RENEW carries no transaction"
    consumable = transaction_claims(type="Consumable")
    assert "not an auto-renewable subscription" in problem(_payload("DID_RENEW", transaction=consumable))
    # A sandbox notification is applied like any other: whether it grants access is the write path's rule.
    assert problem(_payload("DID_RENEW", transaction=transaction_claims())) == ""


def test_a_notification_is_observed_when_apple_signed_it():
    txn = transaction_claims(original_transaction_id="2000000000000001")
    snapshot = mapping.notification_snapshot(_payload("SUBSCRIBED", "INITIAL_BUY", transaction=txn,
                                                      signedDate=1_760_000_000_000, data={"status": 1}))
    assert snapshot.observed_at == datetime(2025, 10, 9, 8, 53, 20, tzinfo=UTC)
    assert (snapshot.provider_subscription_id, snapshot.status, snapshot.environment) == (
        "2000000000000001", Status.ACTIVE, "sandbox")
    assert snapshot.note == "App Store SUBSCRIBED/INITIAL_BUY"


def test_api_statuses_keep_auto_renewable_subscriptions_only():
    subscription = transaction_claims(original_transaction_id="2000000000000001")
    consumable = transaction_claims(original_transaction_id="2000000000000002", type="Consumable")
    snapshots = mapping.status_snapshots([(2, subscription, None), (1, consumable, None)], environment="production")
    assert [(s.provider_subscription_id, s.status, s.environment) for s in snapshots] == [
        ("2000000000000001", Status.EXPIRED, "production")]
    assert snapshots[0].observed_at == datetime.fromtimestamp(subscription["signedDate"] / 1000, tz=UTC)


def test_history_entries_become_the_body_apple_posts():
    assert json.loads(mapping.notification_body("eyJ.x.y")) == {"signedPayload": "eyJ.x.y"}
    assert mapping.notification_body(None) is None


def test_a_legacy_receipt_names_its_transaction():
    assert mapping.receipt_transaction_id(app_receipt(AppleChain(), transaction_id="2000000000000101")) == (
        "2000000000000101")
    assert mapping.receipt_transaction_id(app_receipt(AppleChain(), transaction_id=None)) is None
    with pytest.raises(ValueError):
        mapping.receipt_transaction_id(base64.b64encode(b"definitely not PKCS#7").decode())
