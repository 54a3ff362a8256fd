"""Every notification type through the real pipeline (POST /webhooks/xsolla, then the batched drain):
what the webhooks alone say with the subscriptions API off, and, with it on (the fake), the state read
from the API for each notification."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import Subscriber
from billing.models import StatusChange, Subscription, Transaction
from billing.statuses import Status
from billing.sweeps import subscription_resync
from tests.helpers import Delivered, drain, stream_events
from webhooks.models import WebhookEvent
from webhooks.replay import events_replay

from .conftest import PROJECT_ID, body_of, fixture_bytes, fixture_json, send, sub_10

pytestmark = pytest.mark.django_db


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def iso(dt: datetime) -> str:
    return dt.replace(microsecond=0).isoformat()


def with_subscription(name: str, **changes) -> bytes:
    data = fixture_json(name)
    key = "subscription" if "subscription" in data else "purchase"
    if key == "purchase":
        data["purchase"]["subscription"].update(changes)
    else:
        data["subscription"].update(changes)
    return body_of(data)


def held(body: bytes) -> Delivered:
    """Stored, but its first attempt failed and its retry is planned later (it stays unprocessed)."""
    done = send(body, process=False)
    WebhookEvent.objects.filter(pk=done.event.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    return done


def retried(done: Delivered) -> WebhookEvent:
    """The retry of a held event, now due, through the drain."""
    WebhookEvent.objects.filter(pk=done.event.pk).update(next_attempt_at=None)
    drain()
    done.event.refresh_from_db()
    return done.event


def replayed(done: Delivered) -> WebhookEvent:
    """Staff replay the stored event (the admin action), and the drain processes it again."""
    events_replay([done.event.pk])
    drain()
    done.event.refresh_from_db()
    return done.event


# --- The subscriptions API off: what the notification says ---------------------------------------

def test_create_subscription_with_a_trial_is_trial_until_the_next_charge(xsolla):
    done = send(fixture_bytes("docs/create_subscription"))

    sub = sub_10()
    assert done.event.outcome == "xsolla:10 created: TRIAL"
    assert sub.status == Status.TRIAL
    assert sub.expires_at == at("2015-01-22T19:25:25+04:00")
    assert sub.started_at == at("2014-09-22T19:25:25+04:00")
    assert sub.store_product_id == "b5dac9c8" and sub.product.store_product_id == "b5dac9c8"
    assert sub.auto_renew is False  # a gift (is_gift: true) does not renew
    # the user from user.id, also kept as the subscriber's Xsolla identity
    assert sub.subscriber.external_id == "1234567"
    assert sub.subscriber.xsolla_user_id == "1234567"
    assert sub.environment == "production"


def test_sdk_create_with_numeric_plan_and_coupon_is_trial(xsolla):
    send(fixture_bytes("sdk/create_subscription"))
    sub = sub_10()
    assert sub.status == Status.TRIAL and sub.store_product_id == "1" and sub.auto_renew is True


def test_create_without_trial_is_active(xsolla):
    data = fixture_json("docs/create_subscription")
    del data["subscription"]["trial"]
    send(body_of(data))
    assert sub_10().status == Status.ACTIVE


def test_update_subscription_renews_and_moves_the_expiry(xsolla):
    send(fixture_bytes("sdk/create_subscription"))
    send(with_subscription("docs/update_subscription", date_next_charge="2015-02-22T19:25:25+04:00"))

    sub = sub_10()
    assert sub.status == Status.ACTIVE  # the trial ended with a charge
    assert sub.expires_at == at("2015-02-22T19:25:25+04:00")
    assert sub.store_product_id == "b5dac9c8"  # the plan change is applied too
    assert list(sub.status_changes.order_by("id").values_list("new_status", flat=True)) == ["TRIAL", "ACTIVE"]


def test_sdk_update_names_the_next_charge_date_end(xsolla):
    send(fixture_bytes("sdk/update_subscription"))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.expires_at == at("2015-01-22T19:25:25+04:00")


def test_plan_change_inside_a_trial_keeps_the_trial(xsolla):
    send(fixture_bytes("docs/create_subscription"))
    send(with_subscription("docs/update_subscription", plan_id="bigger-plan"))
    sub = sub_10()
    assert sub.status == Status.TRIAL and sub.store_product_id == "bigger-plan"


def test_non_renewal_is_canceled_until_the_next_charge_date(xsolla):
    send(fixture_bytes("docs/update_subscription"))
    done = send(fixture_bytes("docs/non_renewal_subscription"))

    sub = sub_10()
    assert sub.status == Status.CANCELED
    assert sub.expires_at == at("2015-01-22T19:25:25+04:00")
    assert sub.auto_renew is False and sub.canceled_at == done.event.received_at
    assert (sub.amount_minor, sub.currency) == (3, "USD")  # 0.03 USD


def test_cancel_subscription_is_expired_at_date_end(xsolla):
    send(fixture_bytes("sdk/create_subscription"))
    send(fixture_bytes("sdk/cancel_subscription"))
    sub = sub_10()
    assert sub.status == Status.EXPIRED
    assert sub.ended_at == sub.expires_at == at("2015-01-22T19:25:25+04:00")
    assert sub.auto_renew is False


def test_cancel_with_an_end_still_ahead_keeps_access_until_then(xsolla):
    end = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    send(with_subscription("sdk/cancel_subscription", date_end=end.isoformat()))
    sub = sub_10()
    assert sub.status == Status.CANCELED and sub.expires_at == end
    assert sub.is_entitled(timezone.now())


def test_payment_records_a_sandbox_purchase_and_leaves_the_status_to_subscription_notifications(xsolla):
    send(fixture_bytes("sdk/create_subscription"))
    done = send(fixture_bytes("sdk/payment"))

    sub = sub_10()
    assert sub.status == Status.TRIAL  # unchanged by the payment
    assert sub.environment == "sandbox"  # transaction.dry_run = 1
    tx = Transaction.objects.get(provider="xsolla", provider_transaction_id="1")
    assert (tx.kind, tx.amount_minor, tx.currency, tx.subscription_id) == ("purchase", 999, "USD", sub.pk)
    assert tx.environment == "sandbox"
    assert tx.occurred_at == at("2014-09-24T20:38:16+04:00")
    assert "(+1 transactions)" in done.event.outcome


def test_a_second_payment_is_a_renewal_and_a_repeat_adds_nothing(xsolla):
    first = send(fixture_bytes("sdk/payment"))
    second = fixture_json("sdk/payment")
    second["transaction"]["id"] = 2
    send(body_of(second))
    assert send(fixture_bytes("sdk/payment")).event is None  # the repeated delivery is not stored again
    again = replayed(first)  # and processed again, it records its money once

    kinds = dict(Transaction.objects.filter(provider="xsolla").values_list("provider_transaction_id", "kind"))
    assert kinds == {"1": "purchase", "2": "renewal"}
    assert again.status == WebhookEvent.Status.PROCESSED and "transactions" not in again.outcome


def test_payment_before_create_subscription_then_create_activates(xsolla):
    send(fixture_bytes("sdk/payment"))
    assert sub_10().status == Status.INACTIVE  # money recorded, nothing granted on a payment alone
    send(fixture_bytes("sdk/update_subscription"))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.environment == "sandbox"  # the environment is kept


def test_refund_of_a_subscription_payment_revokes_at_once(xsolla):
    future = iso(timezone.now() + timedelta(days=20))
    send(with_subscription("docs/update_subscription", date_next_charge=future))
    send(fixture_bytes("sdk/payment"))
    assert sub_10().is_entitled(timezone.now())

    refund = send(fixture_bytes("sdk/refund"))

    sub = sub_10()
    assert sub.status == Status.REVOKED and not sub.is_entitled(timezone.now())
    assert sub.ended_at == refund.event.received_at
    refund_tx = Transaction.objects.get(provider="xsolla", provider_transaction_id="refund:1")
    assert (refund_tx.kind, refund_tx.amount_minor, refund_tx.currency) == ("refund", 999, "USD")
    assert refund_tx.raw["refund_details"] == {"code": 1, "reason": "Fraud"}

    # the cancel_subscription Xsolla sends after it does not turn REVOKED into EXPIRED
    send(fixture_bytes("sdk/cancel_subscription"))
    assert sub_10().status == Status.REVOKED


def test_after_a_refund_only_a_charge_for_a_later_period_gives_access_back(xsolla):
    period_end = (timezone.now() + timedelta(days=20)).replace(microsecond=0)
    send(with_subscription("docs/update_subscription", date_next_charge=period_end.isoformat()))
    send(fixture_bytes("sdk/payment"))
    older = held(with_subscription("docs/update_subscription", plan_id="other"))  # arrives before the refund
    send(fixture_bytes("sdk/refund"))
    assert sub_10().status == Status.REVOKED

    # A notification about the refunded period after the refund (a plan change, its dates not past it):
    # still REVOKED, the refunded period's end kept.
    again = send(with_subscription("docs/update_subscription", date_next_charge=period_end.isoformat(),
                                   plan_id="b5dac9c8-yearly"))
    assert again.event.outcome == "xsolla:10 unchanged: REVOKED"
    assert sub_10().status == Status.REVOKED and sub_10().expires_at == period_end
    non_renewal = send(with_subscription("docs/non_renewal_subscription", date_next_charge=period_end.isoformat()))
    assert non_renewal.event.outcome == "xsolla:10 unchanged: REVOKED" and sub_10().status == Status.REVOKED
    # The one that arrived before the refund, processed later (its retry): stale.
    assert retried(older).outcome.startswith("ignored: stale") and sub_10().status == Status.REVOKED
    assert not sub_10().is_entitled(timezone.now())

    # The renewal: a payment, and the update_subscription moving the next charge past the refunded period.
    renewal = fixture_json("sdk/payment")
    renewal["transaction"]["id"] = 2
    send(body_of(renewal))
    assert sub_10().status == Status.REVOKED  # a payment alone grants nothing
    next_end = period_end + timedelta(days=30)
    send(with_subscription("docs/update_subscription", date_next_charge=next_end.isoformat()))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.expires_at == next_end and sub.is_entitled(timezone.now())


def test_a_refund_processed_after_a_newer_notification_still_revokes(xsolla):
    future = iso(timezone.now() + timedelta(days=20))
    send(fixture_bytes("sdk/payment"))
    refund = held(fixture_bytes("sdk/refund"))
    send(with_subscription("docs/update_subscription", date_next_charge=future))
    # Received before the update, processed after it (its first attempt failed): never stale.
    event = retried(refund)
    assert event.status == WebhookEvent.Status.PROCESSED and "updated: ACTIVE → REVOKED" in event.outcome
    assert sub_10().status == Status.REVOKED


def test_a_payment_processed_in_one_batch_with_its_create_keeps_the_created_state(xsolla):
    """A drain batch parses every event before applying any: the payment, parsed while nothing was
    stored, must not undo the create_subscription applied before it."""
    create = fixture_json("docs/create_subscription")
    del create["subscription"]["trial"]
    created = send(body_of(create), process=False)
    paid = send(fixture_bytes("sdk/payment"), process=False)
    drain()

    created.event.refresh_from_db()
    paid.event.refresh_from_db()
    assert created.event.outcome == "xsolla:10 created: ACTIVE"
    assert "kept ACTIVE (+1 transactions)" in paid.event.outcome
    assert sub_10().status == Status.ACTIVE
    assert Transaction.objects.get(provider="xsolla", provider_transaction_id="1").subscription == sub_10()


def test_refund_code_2_is_a_chargeback(xsolla):
    data = fixture_json("sdk/refund")
    data["refund_details"] = {"code": 2, "reason": "Chargeback"}
    send(body_of(data))
    assert Transaction.objects.get(provider_transaction_id="refund:1").kind == "chargeback"


def test_partial_refund_keeps_access_and_records_a_refund(xsolla):
    send(fixture_bytes("docs/update_subscription"))
    send(fixture_bytes("sdk/partial_refund"))

    sub = sub_10()
    assert sub.status == Status.ACTIVE
    refund = Transaction.objects.get(provider="xsolla", provider_transaction_id__startswith="partial_refund:1:")
    assert refund.kind == "refund" and refund.amount_minor is None and refund.currency == "USD"


def test_afs_reject_of_a_recorded_payment_revokes_its_subscription(xsolla):
    send(fixture_bytes("sdk/payment"))
    send(body_of({"notification_type": "afs_reject", "settings": {"project_id": 18404, "merchant_id": 2340},
                  "user": {"id": "1234567"}, "transaction": {"id": 1, "external_id": 1, "dry_run": 1},
                  "refund_details": {"code": 4, "reason": "Potential fraud"}}))
    assert sub_10().status == Status.REVOKED
    assert Transaction.objects.filter(provider_transaction_id="afs_reject:1").exists()


def test_subscription_id_as_a_number_or_a_string_is_one_subscription(xsolla):
    send(fixture_bytes("docs/create_subscription"))
    send(with_subscription("docs/non_renewal_subscription", subscription_id=10))
    assert Subscription.objects.filter(provider="xsolla").count() == 1
    assert sub_10().status == Status.CANCELED


def test_an_older_notification_processed_late_does_not_regress(xsolla):
    older = held(fixture_bytes("docs/update_subscription"))
    send(fixture_bytes("docs/non_renewal_subscription"))
    # it arrived before the non-renewal; its retry comes after
    event = retried(older)
    assert event.status == WebhookEvent.Status.IGNORED and event.outcome.startswith("ignored: stale")
    assert sub_10().status == Status.CANCELED
    assert StatusChange.objects.filter(subscription=sub_10(), ignored=True).count() == 1


@pytest.mark.parametrize("body", [
    body_of({"notification_type": "order_paid", "order": {"id": 5}}),
    body_of({"notification_type": "user_search", "user": {"public_id": "x"}}),
])
def test_notifications_not_about_subscriptions_are_ignored_with_a_reason(xsolla, body):
    done = send(body)
    assert done.response.status_code == 204
    assert done.event.status == WebhookEvent.Status.IGNORED
    assert done.event.outcome == f"ignored: {done.event.event_type} does not change subscription state"
    assert not Subscription.objects.exists() and not Subscriber.objects.exists()


def test_a_replayed_user_validation_is_ignored_with_a_reason(xsolla):
    done = send(fixture_bytes("docs/user_validation"))  # answered 400 INVALID_USER, stored for the audit
    event = replayed(done)
    assert event.status == WebhookEvent.Status.IGNORED
    assert event.outcome == "ignored: user_validation is answered when it arrives"
    assert not Subscription.objects.exists() and not Subscriber.objects.exists()


def test_payment_that_is_not_for_a_subscription_is_ignored(xsolla):
    data = fixture_json("sdk/payment")
    del data["purchase"]["subscription"]
    done = send(body_of(data))
    assert done.event.status == WebhookEvent.Status.IGNORED and "not for a subscription" in done.event.outcome


def test_a_subscription_lifecycle_on_the_stream(xsolla, django_capture_on_commit_callbacks):
    first_charge, second_charge = iso(timezone.now() + timedelta(days=30)), iso(timezone.now() + timedelta(days=60))

    create = fixture_json("docs/create_subscription")
    create["subscription"].update(date_next_charge=first_charge, is_gift=False)
    del create["subscription"]["trial"]
    renewal = fixture_json("docs/update_subscription")
    renewal["subscription"]["date_next_charge"] = second_charge
    non_renewal = fixture_json("docs/non_renewal_subscription")
    non_renewal["subscription"].update(date_next_charge=second_charge, subscription_id=10)  # a number this time
    cancel = fixture_json("sdk/cancel_subscription")
    cancel["subscription"]["date_end"] = iso(timezone.now())

    with django_capture_on_commit_callbacks(execute=True):  # the stream is written after commit
        for data in (create, fixture_json("sdk/payment"), renewal, non_renewal):
            assert send(body_of(data)).response.status_code == 204
    sub = sub_10()
    assert sub.status == Status.CANCELED and sub.is_entitled(timezone.now())
    assert sub.expires_at == at(second_charge)

    with django_capture_on_commit_callbacks(execute=True):
        assert send(body_of(cancel)).response.status_code == 204
    sub.refresh_from_db()
    assert sub.status == Status.EXPIRED and not sub.is_entitled(timezone.now())
    history = list(sub.status_changes.filter(kind="status").order_by("id").values_list("new_status", flat=True))
    assert history == ["ACTIVE", "CANCELED", "EXPIRED"]
    # the renewal's new expiry, without a status change, is in the history as a `state` row (finance)
    assert sub.status_changes.filter(kind="state", expires_at=at(second_charge)).exists()
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED).count() == 5
    assert [e["newStatus"] for e in stream_events()] == ["ACTIVE", "CANCELED", "EXPIRED"]


# --- The subscriptions API on: a notification is a trigger, the state is fetched -----------------

def test_webhook_state_comes_from_the_api_when_configured(fake_xsolla):
    nxt = timezone.now() + timedelta(days=30)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_next_charge=iso(nxt)))
    before = timezone.now()

    # an old create_subscription (delivered late, after the renewal) cannot regress anything:
    send(fixture_bytes("docs/create_subscription"))

    sub = sub_10()
    assert sub.last_event_at >= before  # observed when fetched
    assert sub.status == Status.ACTIVE  # charged: the trial in the notification is over
    assert sub.expires_at == nxt.replace(microsecond=0)
    assert (sub.period_unit, sub.period_value) == ("month", 1)
    assert fake_xsolla.requests[-1]["path"] == f"/projects/{PROJECT_ID}/subscriptions/10"


def test_create_in_trial_is_trial_with_the_api_too(fake_xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_last_charge=None))
    send(fixture_bytes("docs/create_subscription"))
    assert sub_10().status == Status.TRIAL


def test_payment_with_the_api_records_the_money_and_the_fetched_state(fake_xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    send(fixture_bytes("sdk/payment"))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.environment == "sandbox"
    assert sub.transactions.get().provider_transaction_id == "1"


def test_refund_with_the_api_revokes_until_a_later_period_is_charged(fake_xsolla):
    period_end = (timezone.now() + timedelta(days=20)).replace(microsecond=0)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567",
                                                          date_next_charge=iso(period_end)))
    send(fixture_bytes("docs/update_subscription"))
    send(fixture_bytes("sdk/payment"))
    assert sub_10().is_entitled(timezone.now())

    # A full refund revokes, even though Xsolla still reports the subscription active; as of when the
    # refund arrived (not when the API was asked), so that older notifications stay older.
    refund = send(fixture_bytes("sdk/refund"))
    sub = sub_10()
    assert sub.status == Status.REVOKED and not sub.is_entitled(timezone.now())
    assert sub.last_event_at == refund.event.received_at
    assert sub.transactions.get(provider_transaction_id="refund:1").amount_minor == 999
    # What follows for the same period keeps it REVOKED: a partial refund, a re-poll, a late
    # update_subscription, and the cancel_subscription Xsolla may send (not EXPIRED either).
    send(fixture_bytes("sdk/partial_refund"))
    assert sub_10().status == Status.REVOKED
    assert subscription_resync(subscription=sub_10()).new_status == Status.REVOKED
    late = fixture_json("docs/update_subscription")
    late["subscription"]["date_next_charge"] = iso(period_end)
    send(body_of(late))
    assert sub_10().status == Status.REVOKED

    # The next period charged: Xsolla's state and its update_subscription move the next charge on.
    next_end = period_end + timedelta(days=30)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_next_charge=iso(next_end),
                                                          date_last_charge=iso(timezone.now())))
    renewal = fixture_json("docs/update_subscription")
    renewal["subscription"]["date_next_charge"] = iso(next_end)
    send(body_of(renewal))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.expires_at == next_end and sub.is_entitled(timezone.now())


def test_refund_then_cancel_with_the_api_stays_revoked(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", status="canceled",
                                                          date_end=iso(timezone.now())))
    send(fixture_bytes("sdk/refund"))
    assert sub_10().status == Status.REVOKED
    send(fixture_bytes("sdk/cancel_subscription"))
    assert xsolla.fetch(sub_10()).status == Status.REVOKED
    assert sub_10().status == Status.REVOKED


def test_partial_refund_with_the_api_keeps_access(fake_xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription(
        "10", user_id="1234567", date_next_charge=iso(timezone.now() + timedelta(days=20))))
    send(fixture_bytes("docs/update_subscription"))
    requests_before = len(fake_xsolla.requests)
    send(fixture_bytes("sdk/partial_refund"))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.is_entitled(timezone.now())
    assert sub.transactions.get().provider_transaction_id.startswith("partial_refund:1:")
    assert len(fake_xsolla.requests) == requests_before  # a partial refund changes no state: nothing asked


def test_xsolla_down_while_processing_is_retried_and_then_processed(fake_xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    fake_xsolla.fail_next(503)
    done = send(fixture_bytes("docs/update_subscription"))
    assert done.event.status == WebhookEvent.Status.RECEIVED and "StoreUnavailable" in done.event.error
    assert not Subscription.objects.exists()

    event = retried(done)  # Xsolla answers again
    assert event.status == WebhookEvent.Status.PROCESSED and event.attempts == 2
    assert sub_10().status == Status.ACTIVE
