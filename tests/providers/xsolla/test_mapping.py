"""mapping.py, pure: Xsolla's dates, ids and amounts, the API's subscription object and a notification's
subscription read into XsollaSubscription, the status rules, the notification table and the
transactions a payment or refund records."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from billing.providers.base import PermanentError
from billing.providers.xsolla import mapping
from billing.providers.xsolla.selectors import Stored
from billing.statuses import Status
from tests.fakes.xsolla import FakeXsolla

from .conftest import fixture_json

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def api_object(**kw) -> dict:
    return FakeXsolla.subscription("10", user_id="1234567", **kw)


def stored(status: str, *, expires_at=None, last_event_at=None, environment="production") -> Stored:
    return Stored(status=status, expires_at=expires_at, environment=environment, last_event_at=last_event_at)


# --- Readers ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-01T10:00:00+0300", datetime(2026, 1, 1, 7, 0, tzinfo=UTC)),  # the API's form
    ("2014-09-24T20:38:16+04:00", datetime(2014, 9, 24, 16, 38, 16, tzinfo=UTC)),  # the webhooks' form
    ("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
    ("2026-01-01T10:00:00", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),  # no offset: UTC
    ("2015-13-45T99:00:00+04:00", None),  # the API documentation's own malformed date_end
    ("", None),
    (None, None),
])
def test_xsolla_dates_in_every_form_they_come(text, expected):
    assert mapping.api_subscription(api_object(date_end=text)).date_end == expected


@pytest.mark.parametrize(("value", "expected"), [(10, "10"), ("10", "10"), (10.0, "10"), (" 10 ", "10"),
                                                 (None, ""), (True, "")])
def test_ids_arrive_as_numbers_or_strings(value, expected):
    assert mapping.id_str(value) == expected


def test_is_dry_run_and_payment_time_come_from_the_transaction():
    payment = fixture_json("sdk/payment")
    assert mapping.is_dry_run(payment) is True
    assert mapping.payment_time(payment).isoformat() == "2014-09-24T20:38:16+04:00"
    del payment["transaction"]["dry_run"]
    assert mapping.is_dry_run(payment) is False
    assert mapping.payment_time({"transaction": {}}) is None


# --- Typed values -------------------------------------------------------------------------------

def test_the_api_object_names_the_plan_by_its_external_id_and_reads_its_price_and_period():
    sub = mapping.api_subscription(api_object(plan="b5dac9c8", amount=4.99, currency="eur", period=(3, "Month")))
    assert (sub.subscription_id, sub.plan_id, sub.plan_name, sub.user_id) == ("10", "b5dac9c8", "Premium", "1234567")
    assert (sub.amount_minor, sub.currency) == (499, "EUR")
    assert (sub.period_unit, sub.period_value) == ("month", 3)


@pytest.mark.parametrize(("period", "expected"), [((1, "day"), ("day", 1)), ((2, "week"), ("week", 2)),
                                                  ((1, "year"), ("year", 1)), ((1, "fortnight"), (None, None)),
                                                  (None, (None, None))])
def test_the_api_period_units(period, expected):
    sub = mapping.api_subscription(api_object(period=period))
    assert (sub.period_unit, sub.period_value) == expected


def test_an_api_object_without_an_id_is_permanent():
    with pytest.raises(PermanentError, match="no id"):
        mapping.api_subscription({"status": "active"})


def test_a_notification_names_its_subscription_directly_or_through_the_purchase():
    created = mapping.notification_subscription(fixture_json("docs/create_subscription"))
    assert (created.subscription_id, created.plan_id, created.trial_value, created.is_gift) == ("10", "b5dac9c8", 90,
                                                                                                True)
    paid = mapping.notification_subscription(fixture_json("sdk/payment"))
    assert (paid.subscription_id, paid.plan_id, paid.amount_minor, paid.currency) == ("10", "1", 999, "USD")
    assert mapping.notification_subscription({"notification_type": "payment"}) is None


# --- Status rules -------------------------------------------------------------------------------

@pytest.mark.parametrize(("xsolla_status", "date_end_days", "expected"), [
    ("new", None, Status.INACTIVE),
    ("active", None, Status.ACTIVE),
    ("non_renewing", None, Status.CANCELED),
    ("freeze", None, Status.PAUSED),
    ("canceled", -1, Status.EXPIRED),
    ("canceled", 2, Status.CANCELED),
])
def test_status_mapping_of_every_api_status(xsolla_status, date_end_days, expected):
    end = (NOW + timedelta(days=date_end_days)).isoformat() if date_end_days is not None else None
    snapshot = mapping.subscription_snapshot(api_object(status=xsolla_status, date_end=end), observed_at=NOW,
                                             stored=None)
    assert snapshot.status == expected


def test_an_unknown_api_status_is_a_permanent_error():
    with pytest.raises(PermanentError, match="freezed"):
        mapping.subscription_snapshot(api_object(status="freezed"), observed_at=NOW, stored=None)


def test_an_uncharged_active_subscription_is_in_its_trial_when_a_webhook_or_we_said_so():
    never_charged = api_object(date_last_charge=None)
    assert mapping.subscription_snapshot(never_charged, observed_at=NOW, stored=None).status == Status.ACTIVE
    assert mapping.subscription_snapshot(never_charged, observed_at=NOW, stored=None,
                                         trial_hint=True).status == Status.TRIAL
    assert mapping.subscription_snapshot(never_charged, observed_at=NOW,
                                         stored=stored(Status.TRIAL)).status == Status.TRIAL


def test_a_refund_revokes_whatever_xsolla_still_reports_until_a_later_period_is_charged():
    period_end = datetime(2026, 4, 1, tzinfo=UTC)
    revoked = stored(Status.REVOKED, expires_at=period_end)
    same_period = api_object(date_next_charge=period_end.isoformat())
    refunded = mapping.subscription_snapshot(same_period, observed_at=NOW, stored=None, revoke=True)
    assert refunded.status == Status.REVOKED and refunded.expires_at == period_end  # what a renewal must go past
    assert mapping.subscription_snapshot(same_period, observed_at=NOW, stored=revoked).status == Status.REVOKED
    later = api_object(date_next_charge=(period_end + timedelta(days=30)).isoformat())
    assert mapping.subscription_snapshot(later, observed_at=NOW, stored=revoked).status == Status.ACTIVE
    assert mapping.stays_revoked(revoked, None) and not mapping.stays_revoked(stored(Status.ACTIVE), None)


def test_a_refund_is_as_of_its_arrival_but_never_older_than_what_we_hold():
    assert mapping.refund_observed_at(NOW, None) == NOW
    assert mapping.refund_observed_at(NOW, stored(Status.ACTIVE, last_event_at=NOW - timedelta(hours=1))) == NOW
    later = NOW + timedelta(minutes=3)
    assert mapping.refund_observed_at(NOW, stored(Status.ACTIVE, last_event_at=later)) == later


def test_a_payment_is_as_of_the_state_it_was_read_from_or_its_own_time():
    payment = fixture_json("sdk/payment")
    assert mapping.money_observed_at(payment, received_at=NOW, stored=stored(Status.ACTIVE, last_event_at=NOW)) == NOW
    assert mapping.money_observed_at(payment, received_at=NOW, stored=None).isoformat() == "2014-09-24T20:38:16+04:00"
    assert mapping.money_observed_at({}, received_at=NOW, stored=None) == NOW


# --- What a notification alone says -------------------------------------------------------------

def test_every_notification_type_we_act_on_has_a_rule():
    assert set(mapping.NOTIFICATION_STATES) == mapping.SUBSCRIPTION_TYPES | mapping.TRANSACTION_TYPES


@pytest.mark.parametrize(("name", "status", "derived"), [
    ("docs/create_subscription", Status.TRIAL, False),
    ("docs/update_subscription", Status.ACTIVE, False),
    ("docs/non_renewal_subscription", Status.CANCELED, False),
    ("sdk/cancel_subscription", Status.EXPIRED, False),
    ("sdk/refund", Status.REVOKED, False),
    ("sdk/payment", Status.INACTIVE, True),  # money only: nothing known of the status
    ("sdk/partial_refund", Status.INACTIVE, True),
])
def test_each_notification_type_sets_its_state(name, status, derived):
    body = fixture_json(name)
    snapshot = mapping.notification_snapshot(body["notification_type"], body, received_at=NOW, stored=None)
    assert (snapshot.status, snapshot.derived, snapshot.provider_subscription_id) == (status, derived, "10")
    assert snapshot.raw["source"] == "webhook" and snapshot.identity_value == "1234567"


def test_a_notification_about_the_refunded_period_keeps_it_revoked():
    update = fixture_json("docs/update_subscription")  # next charge 2015-01-22
    revoked = stored(Status.REVOKED, expires_at=datetime(2015, 1, 22, 15, 25, 25, tzinfo=UTC))
    snapshot = mapping.notification_snapshot("update_subscription", update, received_at=NOW, stored=revoked)
    assert snapshot.status == Status.REVOKED and snapshot.expires_at is None  # the refunded period's end stays


def test_a_notification_without_a_subscription_or_a_rule_is_permanent():
    with pytest.raises(PermanentError, match="names no subscription"):
        mapping.notification_snapshot("payment", {"transaction": {"id": 1}}, received_at=NOW, stored=None)
    with pytest.raises(PermanentError, match="no mapping"):
        mapping.notification_snapshot("order_paid", fixture_json("sdk/payment"), received_at=NOW, stored=None)


# --- Transactions -------------------------------------------------------------------------------

def test_a_payment_is_a_purchase_or_a_renewal_of_the_subscription_s_part():
    payment = fixture_json("sdk/payment")
    first = mapping.transaction_record("payment", payment, received_at=NOW, renewal=False)
    assert (first.provider_transaction_id, first.kind, first.amount_minor, first.currency) == ("1", "purchase",
                                                                                               999, "USD")
    assert first.occurred_at.isoformat() == "2014-09-24T20:38:16+04:00"
    assert mapping.transaction_record("payment", payment, received_at=NOW, renewal=True).kind == "renewal"


def test_refunds_chargebacks_and_partial_refunds():
    refund = fixture_json("sdk/refund")
    record = mapping.transaction_record("refund", refund, received_at=NOW, renewal=False)
    assert (record.provider_transaction_id, record.kind, record.occurred_at) == ("refund:1", "refund", NOW)
    refund["refund_details"]["code"] = mapping.CHARGEBACK_REFUND_CODE
    assert mapping.transaction_record("refund", refund, received_at=NOW, renewal=False).kind == "chargeback"
    partial = mapping.transaction_record("partial_refund", fixture_json("sdk/partial_refund"), received_at=NOW,
                                         renewal=False)
    assert partial.provider_transaction_id.startswith("partial_refund:1:") and partial.amount_minor is None


def test_a_transaction_without_an_id_is_permanent():
    with pytest.raises(PermanentError, match=r"transaction\.id"):
        mapping.transaction_record("payment", {"transaction": {}}, received_at=timezone.now(), renewal=False)
