"""The subscriptions API through the local fake: re-poll (fetch), cancel at period end, webhooks that
fetch the current state, and Xsolla failing (5xx, 429, timeouts, bad credentials)."""

import base64
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.models import Subscription
from billing.providers.base import NotConfigured, PermanentError, StoreUnavailable
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status
from tests.factories import SubscriberFactory, SubscriptionFactory

from .conftest import API_KEY, MERCHANT_ID, PROJECT_ID, body_of, fixture_bytes, fixture_json, process

pytestmark = pytest.mark.django_db


def iso(dt: datetime) -> str:
    return dt.replace(microsecond=0).isoformat()


def xsolla_subscription(**kw):
    subscriber = kw.pop("subscriber", None) or SubscriberFactory(external_id="1234567")
    return SubscriptionFactory(provider="xsolla", provider_subscription_id="10", subscriber=subscriber,
                               product=None, store_product_id="b5dac9c8", **kw)


def test_fetch_reads_the_current_state_with_basic_auth(fake_xsolla, xsolla):
    nxt = timezone.now() + timedelta(days=30)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_next_charge=iso(nxt),
                                                          amount=4.99, currency="EUR", period=(3, "month")))
    sub = xsolla_subscription(status=Status.ACTIVE)

    snapshot = xsolla.fetch(sub)

    assert snapshot.status == Status.ACTIVE and snapshot.provider_subscription_id == "10"
    assert snapshot.expires_at == nxt.replace(microsecond=0)
    assert (snapshot.amount_minor, snapshot.currency) == (499, "EUR")
    assert (snapshot.period_unit, snapshot.period_value) == ("month", 3)
    assert snapshot.store_product_id == "b5dac9c8" and snapshot.user_id == "1234567"
    request = fake_xsolla.requests[-1]
    assert (request["method"], request["path"]) == ("GET", f"/projects/{PROJECT_ID}/subscriptions/10")
    assert request["authorization"] == "Basic " + base64.b64encode(f"{MERCHANT_ID}:{API_KEY}".encode()).decode()


def test_a_fetched_plan_name_labels_the_unnamed_product_but_never_a_staff_label(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    sub = xsolla_subscription(status=Status.ACTIVE)
    apply_snapshot(xsolla.fetch(sub), Cause(CauseKind.POLL))
    sub.refresh_from_db()
    assert sub.product.label == "Premium"  # the plan's name at Xsolla, for the list API's plan_name

    sub.product.label = "Premium (staff)"
    sub.product.save()
    apply_snapshot(xsolla.fetch(sub), Cause(CauseKind.POLL))
    sub.product.refresh_from_db()
    assert sub.product.label == "Premium (staff)"


@pytest.mark.parametrize(("xsolla_status", "date_end_days", "expected"), [
    ("new", None, Status.INACTIVE),
    ("active", None, Status.ACTIVE),
    ("non_renewing", None, Status.CANCELED),
    ("freeze", None, Status.PAUSED),
    ("canceled", -1, Status.EXPIRED),
    ("canceled", 2, Status.CANCELED),
])
def test_status_mapping_of_every_api_status(fake_xsolla, xsolla, xsolla_status, date_end_days, expected):
    end = iso(timezone.now() + timedelta(days=date_end_days)) if date_end_days is not None else None
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", status=xsolla_status,
                                                          date_end=end))
    assert xsolla.fetch(xsolla_subscription()).status == expected


def test_an_unknown_api_status_is_a_permanent_error(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", status="freezed"))
    with pytest.raises(PermanentError, match="freezed"):
        xsolla.fetch(xsolla_subscription())


def test_fetch_keeps_a_trial_that_has_not_been_charged(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_last_charge=None))
    assert xsolla.fetch(xsolla_subscription(status=Status.TRIAL)).status == Status.TRIAL
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))  # charged since
    assert xsolla.fetch(Subscription.objects.get()).status == Status.ACTIVE


def test_cancel_sets_non_renewing_and_keeps_access_until_the_next_charge(fake_xsolla, xsolla):
    nxt = timezone.now() + timedelta(days=12)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_next_charge=iso(nxt)))
    sub = xsolla_subscription(status=Status.ACTIVE)

    snapshot = xsolla.cancel(sub)
    apply_snapshot(snapshot, Cause(CauseKind.API, ref="test"))

    request = fake_xsolla.requests[-1]
    assert (request["method"], request["path"]) == ("PUT", f"/projects/{PROJECT_ID}/users/1234567/subscriptions/10")
    assert request["body"] == {"status": "non_renewing"}
    assert fake_xsolla.subscriptions["10"]["status"] == "non_renewing"
    sub.refresh_from_db()
    assert sub.status == Status.CANCELED and sub.auto_renew is False
    assert sub.expires_at == nxt.replace(microsecond=0) and sub.is_entitled(timezone.now())


def test_cancel_addresses_the_user_by_their_xsolla_identity(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="xs-user-9"))
    sub = xsolla_subscription(subscriber=SubscriberFactory(external_id="42", xsolla_user_id="xs-user-9"))
    xsolla.cancel(sub)
    assert fake_xsolla.requests[-1]["path"].endswith("/users/xs-user-9/subscriptions/10")


@pytest.mark.parametrize("failure", [500, 502, 503, 429, "timeout"])
def test_xsolla_failing_or_slow_is_store_unavailable(fake_xsolla, xsolla, settings, failure):
    settings.XSOLLA_API_TIMEOUT_SECONDS = (1, 0.3)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    fake_xsolla.fail_next(failure)
    with pytest.raises(StoreUnavailable):
        xsolla.fetch(xsolla_subscription())
    assert xsolla.fetch(Subscription.objects.get()).status == Status.ACTIVE  # and fine once it answers


def test_xsolla_unreachable_is_store_unavailable(xsolla, settings):
    settings.XSOLLA_PROJECT_ID, settings.XSOLLA_MERCHANT_ID, settings.XSOLLA_API_KEY = PROJECT_ID, MERCHANT_ID, "k"
    settings.XSOLLA_API_BASE = "http://127.0.0.1:1/merchant/v2"
    with pytest.raises(StoreUnavailable):
        xsolla.fetch(xsolla_subscription())


def test_wrong_credentials_and_unknown_subscription_are_permanent(fake_xsolla, xsolla, settings):
    sub = xsolla_subscription()
    with pytest.raises(PermanentError, match="not found"):
        xsolla.fetch(sub)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    settings.XSOLLA_API_KEY = "wrong"
    with pytest.raises(PermanentError, match="401"):
        xsolla.fetch(sub)


def test_without_api_credentials_fetch_and_cancel_say_what_is_missing(xsolla):
    sub = xsolla_subscription()
    for call in (xsolla.fetch, xsolla.cancel):
        with pytest.raises(NotConfigured, match="XSOLLA_MERCHANT_ID"):
            call(sub)


# --- webhooks with the API configured: the notification is a trigger, the state is fetched ---

def test_webhook_state_comes_from_the_api_when_configured(fake_xsolla, xsolla):
    nxt = timezone.now() + timedelta(days=30)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_next_charge=iso(nxt)))
    before = timezone.now()

    # an old create_subscription (delivered late, after the renewal) cannot regress anything:
    done = process(xsolla, fixture_bytes("docs/create_subscription"))

    snapshot = done.snapshot
    assert snapshot.observed_at >= before  # observed when fetched
    sub = Subscription.objects.get()
    assert sub.status == Status.ACTIVE  # charged: the trial in the notification is over
    assert sub.expires_at == nxt.replace(microsecond=0)
    assert (sub.period_unit, sub.period_value) == ("month", 1)
    assert fake_xsolla.requests[-1]["path"] == f"/projects/{PROJECT_ID}/subscriptions/10"


def test_create_in_trial_is_trial_with_the_api_too(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_last_charge=None))
    process(xsolla, fixture_bytes("docs/create_subscription"))
    assert Subscription.objects.get().status == Status.TRIAL


def test_payment_with_the_api_records_the_money_and_the_fetched_state(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    process(xsolla, fixture_bytes("sdk/payment"))
    sub = Subscription.objects.get()
    assert sub.status == Status.ACTIVE and sub.environment == "sandbox"
    assert sub.transactions.get().provider_transaction_id == "1"


def test_refund_with_the_api_revokes_until_a_later_period_is_charged(fake_xsolla, xsolla):
    period_end = (timezone.now() + timedelta(days=20)).replace(microsecond=0)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567",
                                                          date_next_charge=iso(period_end)))
    process(xsolla, fixture_bytes("docs/update_subscription"))
    process(xsolla, fixture_bytes("sdk/payment"))
    assert Subscription.objects.get().is_entitled(timezone.now())

    # A full refund revokes, even though Xsolla still reports the subscription active; as of when the
    # refund arrived (not when the API was asked), so that older notifications stay older.
    refunded_at = timezone.now()
    done = process(xsolla, fixture_bytes("sdk/refund"), received_at=refunded_at)
    sub = Subscription.objects.get()
    assert sub.status == Status.REVOKED and not sub.is_entitled(timezone.now())
    assert done.snapshot.observed_at == refunded_at
    assert sub.transactions.get(provider_transaction_id="refund:1").amount_minor == 999
    # What follows for the same period keeps it REVOKED: a partial refund, a re-poll, a late
    # update_subscription, and the cancel_subscription Xsolla may send (not EXPIRED either).
    process(xsolla, fixture_bytes("sdk/partial_refund"))
    assert Subscription.objects.get().status == Status.REVOKED
    assert apply_snapshot(xsolla.fetch(Subscription.objects.get()), Cause(CauseKind.POLL)).new_status == Status.REVOKED
    late = fixture_json("docs/update_subscription")
    late["subscription"]["date_next_charge"] = iso(period_end)
    process(xsolla, body_of(late))
    assert Subscription.objects.get().status == Status.REVOKED

    # The next period charged: Xsolla's state and its update_subscription move the next charge on.
    next_end = period_end + timedelta(days=30)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_next_charge=iso(next_end),
                                                          date_last_charge=iso(timezone.now())))
    renewal = fixture_json("docs/update_subscription")
    renewal["subscription"]["date_next_charge"] = iso(next_end)
    process(xsolla, body_of(renewal))
    sub = Subscription.objects.get()
    assert sub.status == Status.ACTIVE and sub.expires_at == next_end and sub.is_entitled(timezone.now())


def test_refund_then_cancel_with_the_api_stays_revoked(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", status="canceled",
                                                          date_end=iso(timezone.now())))
    process(xsolla, fixture_bytes("sdk/refund"))
    assert Subscription.objects.get().status == Status.REVOKED
    process(xsolla, fixture_bytes("sdk/cancel_subscription"))
    assert xsolla.fetch(Subscription.objects.get()).status == Status.REVOKED
    assert Subscription.objects.get().status == Status.REVOKED


def test_partial_refund_with_the_api_keeps_access(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription(
        "10", user_id="1234567", date_next_charge=iso(timezone.now() + timedelta(days=20))))
    process(xsolla, fixture_bytes("docs/update_subscription"))
    process(xsolla, fixture_bytes("sdk/partial_refund"))
    sub = Subscription.objects.get()
    assert sub.status == Status.ACTIVE and sub.is_entitled(timezone.now())
    assert sub.transactions.get().provider_transaction_id.startswith("partial_refund:1:")


def test_xsolla_down_while_processing_is_transient(fake_xsolla, xsolla):
    fake_xsolla.fail_next(503)
    with pytest.raises(StoreUnavailable):
        process(xsolla, fixture_bytes("docs/update_subscription"))
    assert not Subscription.objects.exists()
