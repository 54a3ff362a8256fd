"""parse() → apply_snapshot() for every notification type, with the subscriptions API off: what the
webhooks alone say (each fixture body signed and processed the way the pipeline does)."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import Subscriber
from billing.apply import apply_snapshots
from billing.models import StatusChange, Subscription, Transaction
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status

from .conftest import body_of, fixture_bytes, fixture_json, parse, process

pytestmark = pytest.mark.django_db


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def sub_10() -> Subscription:
    return Subscription.objects.get(provider="xsolla", provider_subscription_id="10")


def with_subscription(name: str, **changes) -> bytes:
    data = fixture_json(name)
    key = "subscription" if "subscription" in data else "purchase"
    if key == "purchase":
        data["purchase"]["subscription"].update(changes)
    else:
        data["subscription"].update(changes)
    return body_of(data)


def test_create_subscription_with_a_trial_is_trial_until_the_next_charge(xsolla):
    done = process(xsolla, fixture_bytes("docs/create_subscription"))

    sub = sub_10()
    assert done.results[0].outcome == "created"
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
    process(xsolla, fixture_bytes("sdk/create_subscription"))
    sub = sub_10()
    assert sub.status == Status.TRIAL and sub.store_product_id == "1" and sub.auto_renew is True


def test_create_without_trial_is_active(xsolla):
    data = fixture_json("docs/create_subscription")
    del data["subscription"]["trial"]
    process(xsolla, body_of(data))
    assert sub_10().status == Status.ACTIVE


def test_update_subscription_renews_and_moves_the_expiry(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("sdk/create_subscription"), received_at=t0)
    process(xsolla, with_subscription("docs/update_subscription", date_next_charge="2015-02-22T19:25:25+04:00"),
            received_at=t0 + timedelta(minutes=1))

    sub = sub_10()
    assert sub.status == Status.ACTIVE  # the trial ended with a charge
    assert sub.expires_at == at("2015-02-22T19:25:25+04:00")
    assert sub.store_product_id == "b5dac9c8"  # the plan change is applied too
    assert list(sub.status_changes.order_by("id").values_list("new_status", flat=True)) == ["TRIAL", "ACTIVE"]


def test_sdk_update_names_the_next_charge_date_end(xsolla):
    process(xsolla, fixture_bytes("sdk/update_subscription"))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.expires_at == at("2015-01-22T19:25:25+04:00")


def test_plan_change_inside_a_trial_keeps_the_trial(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("docs/create_subscription"), received_at=t0)
    process(xsolla, with_subscription("docs/update_subscription", plan_id="bigger-plan"),
            received_at=t0 + timedelta(minutes=1))
    sub = sub_10()
    assert sub.status == Status.TRIAL and sub.store_product_id == "bigger-plan"


def test_non_renewal_is_canceled_until_the_next_charge_date(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("docs/update_subscription"), received_at=t0)
    process(xsolla, fixture_bytes("docs/non_renewal_subscription"), received_at=t0 + timedelta(minutes=1))

    sub = sub_10()
    assert sub.status == Status.CANCELED
    assert sub.expires_at == at("2015-01-22T19:25:25+04:00")
    assert sub.auto_renew is False and sub.canceled_at == t0 + timedelta(minutes=1)
    assert (sub.amount_minor, sub.currency) == (3, "USD")  # 0.03 USD


def test_cancel_subscription_is_expired_at_date_end(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("sdk/create_subscription"), received_at=t0)
    process(xsolla, fixture_bytes("sdk/cancel_subscription"), received_at=t0 + timedelta(minutes=1))
    sub = sub_10()
    assert sub.status == Status.EXPIRED
    assert sub.ended_at == sub.expires_at == at("2015-01-22T19:25:25+04:00")
    assert sub.auto_renew is False


def test_cancel_with_an_end_still_ahead_keeps_access_until_then(xsolla):
    end = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    process(xsolla, with_subscription("sdk/cancel_subscription", date_end=end.isoformat()))
    sub = sub_10()
    assert sub.status == Status.CANCELED and sub.expires_at == end
    assert sub.is_entitled(timezone.now())


def test_payment_records_a_sandbox_purchase_and_leaves_the_status_to_subscription_notifications(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("sdk/create_subscription"), received_at=t0)
    done = process(xsolla, fixture_bytes("sdk/payment"), received_at=t0 + timedelta(minutes=1))

    sub = sub_10()
    assert sub.status == Status.TRIAL  # unchanged by the payment
    assert sub.environment == "sandbox"  # transaction.dry_run = 1
    tx = Transaction.objects.get(provider="xsolla", provider_transaction_id="1")
    assert (tx.kind, tx.amount_minor, tx.currency, tx.subscription_id) == ("purchase", 999, "USD", sub.pk)
    assert tx.environment == "sandbox"
    assert tx.occurred_at == at("2014-09-24T20:38:16+04:00")
    assert done.results[0].transactions_added == 1


def test_a_second_payment_is_a_renewal_and_a_repeat_adds_nothing(xsolla):
    process(xsolla, fixture_bytes("sdk/payment"))
    second = fixture_json("sdk/payment")
    second["transaction"]["id"] = 2
    process(xsolla, body_of(second))
    again = process(xsolla, fixture_bytes("sdk/payment"))

    kinds = dict(Transaction.objects.filter(provider="xsolla").values_list("provider_transaction_id", "kind"))
    assert kinds == {"1": "purchase", "2": "renewal"}
    assert again.results[0].transactions_added == 0


def test_payment_before_create_subscription_then_create_activates(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("sdk/payment"), received_at=t0)
    assert sub_10().status == Status.INACTIVE  # money recorded, nothing granted on a payment alone
    process(xsolla, fixture_bytes("sdk/update_subscription"), received_at=t0 + timedelta(minutes=1))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.environment == "sandbox"  # the environment is kept


def test_refund_of_a_subscription_payment_revokes_at_once(xsolla):
    t0 = timezone.now()
    future = (t0 + timedelta(days=20)).replace(microsecond=0).isoformat()
    process(xsolla, with_subscription("docs/update_subscription", date_next_charge=future), received_at=t0)
    process(xsolla, fixture_bytes("sdk/payment"), received_at=t0 + timedelta(minutes=1))
    assert sub_10().is_entitled(timezone.now())

    process(xsolla, fixture_bytes("sdk/refund"), received_at=t0 + timedelta(minutes=2))

    sub = sub_10()
    assert sub.status == Status.REVOKED and not sub.is_entitled(timezone.now())
    assert sub.ended_at == t0 + timedelta(minutes=2)
    refund = Transaction.objects.get(provider="xsolla", provider_transaction_id="refund:1")
    assert (refund.kind, refund.amount_minor, refund.currency) == ("refund", 999, "USD")
    assert refund.raw["refund_details"] == {"code": 1, "reason": "Fraud"}

    # the cancel_subscription Xsolla sends after it does not turn REVOKED into EXPIRED
    process(xsolla, fixture_bytes("sdk/cancel_subscription"), received_at=t0 + timedelta(minutes=3))
    assert sub_10().status == Status.REVOKED


def test_after_a_refund_only_a_charge_for_a_later_period_gives_access_back(xsolla):
    t0 = timezone.now()
    period_end = (t0 + timedelta(days=20)).replace(microsecond=0)
    process(xsolla, with_subscription("docs/update_subscription", date_next_charge=period_end.isoformat()),
            received_at=t0)
    process(xsolla, fixture_bytes("sdk/payment"), received_at=t0 + timedelta(minutes=1))
    process(xsolla, fixture_bytes("sdk/refund"), received_at=t0 + timedelta(minutes=2))
    assert sub_10().status == Status.REVOKED

    # Xsolla retrying a notification about the refunded period, after the refund: still REVOKED.
    again = process(xsolla, with_subscription("docs/update_subscription", date_next_charge=period_end.isoformat()),
                    received_at=t0 + timedelta(minutes=3))
    assert again.results[0].new_status == Status.REVOKED and sub_10().expires_at == period_end
    non_renewal = with_subscription("docs/non_renewal_subscription", date_next_charge=period_end.isoformat())
    assert process(xsolla, non_renewal, received_at=t0 + timedelta(minutes=4)).results[0].new_status == Status.REVOKED
    # One that arrived before the refund, replayed later: stale.
    older = process(xsolla, with_subscription("docs/update_subscription", plan_id="other"),
                    received_at=t0 + timedelta(seconds=90))
    assert older.results[0].outcome == "stale" and sub_10().status == Status.REVOKED
    assert not sub_10().is_entitled(timezone.now())

    # The renewal: a payment, and the update_subscription moving the next charge past the refunded period.
    renewal = fixture_json("sdk/payment")
    renewal["transaction"]["id"] = 2
    process(xsolla, body_of(renewal), received_at=t0 + timedelta(minutes=5))
    assert sub_10().status == Status.REVOKED  # a payment alone grants nothing
    next_end = period_end + timedelta(days=30)
    process(xsolla, with_subscription("docs/update_subscription", date_next_charge=next_end.isoformat()),
            received_at=t0 + timedelta(minutes=6))
    sub = sub_10()
    assert sub.status == Status.ACTIVE and sub.expires_at == next_end and sub.is_entitled(timezone.now())


def test_a_refund_processed_after_a_newer_notification_still_revokes(xsolla):
    t0 = timezone.now()
    future = (t0 + timedelta(days=20)).replace(microsecond=0).isoformat()
    process(xsolla, fixture_bytes("sdk/payment"), received_at=t0)
    process(xsolla, with_subscription("docs/update_subscription", date_next_charge=future),
            received_at=t0 + timedelta(minutes=5))
    # Received at t0 + 2 min, processed after the update (its first attempt failed): never stale.
    done = process(xsolla, fixture_bytes("sdk/refund"), received_at=t0 + timedelta(minutes=2))
    assert done.results[0].outcome == "updated"
    assert sub_10().status == Status.REVOKED


def test_a_payment_parsed_in_one_batch_with_its_create_keeps_the_created_state(xsolla):
    """A drain batch parses every event before applying any: the payment, parsed while nothing was
    stored, must not undo the create_subscription applied before it."""
    t0 = timezone.now()
    create = fixture_json("docs/create_subscription")
    del create["subscription"]["trial"]
    _, created = parse(xsolla, body_of(create), received_at=t0)
    _, paid = parse(xsolla, fixture_bytes("sdk/payment"), received_at=t0 + timedelta(seconds=1))
    results = apply_snapshots([(s, Cause(CauseKind.WEBHOOK, ref="batch")) for s in created.snapshots + paid.snapshots])

    assert [r.new_status for r in results] == [Status.ACTIVE, Status.ACTIVE]
    assert results[1].transactions_added == 1
    assert sub_10().status == Status.ACTIVE
    assert Transaction.objects.get(provider="xsolla", provider_transaction_id="1").subscription == sub_10()


def test_refund_code_2_is_a_chargeback(xsolla):
    data = fixture_json("sdk/refund")
    data["refund_details"] = {"code": 2, "reason": "Chargeback"}
    process(xsolla, body_of(data))
    assert Transaction.objects.get(provider_transaction_id="refund:1").kind == "chargeback"


def test_partial_refund_keeps_access_and_records_a_refund(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("docs/update_subscription"), received_at=t0)
    process(xsolla, fixture_bytes("sdk/partial_refund"), received_at=t0 + timedelta(minutes=1))

    sub = sub_10()
    assert sub.status == Status.ACTIVE
    refund = Transaction.objects.get(provider="xsolla", provider_transaction_id__startswith="partial_refund:1:")
    assert refund.kind == "refund" and refund.amount_minor is None and refund.currency == "USD"


def test_afs_reject_of_a_recorded_payment_revokes_its_subscription(xsolla):
    process(xsolla, fixture_bytes("sdk/payment"))
    body = body_of({"notification_type": "afs_reject", "settings": {"project_id": 18404, "merchant_id": 2340},
                    "user": {"id": "1234567"}, "transaction": {"id": 1, "external_id": 1, "dry_run": 1},
                    "refund_details": {"code": 4, "reason": "Potential fraud"}})
    process(xsolla, body)
    assert sub_10().status == Status.REVOKED
    assert Transaction.objects.filter(provider_transaction_id="afs_reject:1").exists()


def test_subscription_id_as_a_number_or_a_string_is_one_subscription(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("docs/create_subscription"), received_at=t0)
    process(xsolla, with_subscription("docs/non_renewal_subscription", subscription_id=10),
            received_at=t0 + timedelta(minutes=1))
    assert Subscription.objects.filter(provider="xsolla").count() == 1
    assert sub_10().status == Status.CANCELED


def test_an_older_notification_processed_late_does_not_regress(xsolla):
    t0 = timezone.now()
    process(xsolla, fixture_bytes("docs/non_renewal_subscription"), received_at=t0 + timedelta(minutes=5))
    # replayed from the audit table: it arrived before the non-renewal
    done = process(xsolla, fixture_bytes("docs/update_subscription"), received_at=t0)
    assert done.results[0].outcome == "stale"
    assert sub_10().status == Status.CANCELED
    assert StatusChange.objects.filter(subscription=sub_10(), ignored=True).count() == 1


@pytest.mark.parametrize("body", [
    fixture_bytes("docs/user_validation"),
    body_of({"notification_type": "order_paid", "order": {"id": 5}}),
    body_of({"notification_type": "user_search", "user": {"public_id": "x"}}),
])
def test_notifications_not_about_subscriptions_are_ignored_with_a_reason(xsolla, body):
    done = process(xsolla, body)
    assert done.parsed.snapshots == [] and done.parsed.ignored_reason
    assert not Subscription.objects.exists() and not Subscriber.objects.exists()


def test_payment_that_is_not_for_a_subscription_is_ignored(xsolla):
    data = fixture_json("sdk/payment")
    del data["purchase"]["subscription"]
    done = process(xsolla, body_of(data))
    assert done.parsed.snapshots == [] and "not for a subscription" in done.parsed.ignored_reason
