"""Statuses in plain language (billing/explanations.py): for each of the nine statuses, one line that
says why and until when, in UTC and relative to now."""

from datetime import UTC, datetime, timedelta

import pytest

from billing.apply import apply_snapshot
from billing.explanations import explain, explain_subscription, relative
from billing.models import StatusChange, Subscription, Transaction
from billing.snapshots import Cause, CauseKind, Provider, TransactionKind
from billing.staff import subscription_revoke
from billing.statuses import Status
from tests.factories import SubscriptionFactory, UserFactory, snapshot

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def sub(status, provider=Provider.GOOGLE, **fields) -> Subscription:
    return Subscription(provider=provider, provider_subscription_id="token-1", status=status, **fields)


def change(old, new, occurred_at, cause=CauseKind.WEBHOOK, note="") -> StatusChange:
    return StatusChange(old_status=old, new_status=new, occurred_at=occurred_at, cause=cause, note=note)


@pytest.mark.parametrize(("when", "text"), [
    (NOW + 2 * DAY, "in 2 days"), (NOW - timedelta(hours=3), "3 hours ago"), (NOW + timedelta(seconds=20), "just now"),
    (NOW - timedelta(minutes=1), "1 minute ago"), (NOW + 45 * DAY, "in 1 month"), (NOW - 400 * DAY, "1 year ago"),
    (NOW + 13 * DAY, "in 1 week"),
])
def test_relative_times(when, text):
    assert relative(when, NOW) == text


def test_inactive():
    line = explain(sub(Status.INACTIVE, Provider.STRIPE, created_at=NOW - timedelta(hours=2)), now=NOW).line
    assert line == ("Inactive: the purchase at Stripe has not started a paid or trial period (e.g. the first "
                    "payment is pending or was declined); no access. Created on 8 Dec 2026 08:00 UTC (2 hours ago).")


def test_trial():
    s = sub(Status.TRIAL, Provider.APPLE, started_at=NOW - 3 * DAY, expires_at=NOW + 4 * DAY, auto_renew=True)
    assert explain(s, now=NOW).line == ("Free trial: started on 5 Dec 2026 10:00 UTC (3 days ago); Apple takes the "
                                        "first payment on 12 Dec 2026 10:00 UTC (in 4 days); access until then.")
    s.auto_renew = False
    assert "and will not convert to a paid period (auto-renew is off)" in explain(s, now=NOW).line


def test_active():
    s = sub(Status.ACTIVE, Provider.STRIPE, expires_at=NOW + 20 * DAY, auto_renew=True)
    assert explain(s, now=NOW).line == ("Active: paid at Stripe until 28 Dec 2026 10:00 UTC (in 2 weeks); "
                                        "Stripe renews it then.")
    grant = sub(Status.ACTIVE, Provider.MANUAL, expires_at=None)
    assert explain(grant, now=NOW, staff_name="alice").line == (
        "Active: a staff grant by alice, open-ended (until revoked).")


def test_canceled():
    s = sub(Status.CANCELED, Provider.XSOLLA, canceled_at=NOW - DAY, expires_at=NOW + 9 * DAY, auto_renew=False)
    assert explain(s, now=NOW).line == (
        "Canceled (access until the period ends): canceled on 7 Dec 2026 10:00 UTC (1 day ago), it will not "
        "renew; Xsolla keeps access until 17 Dec 2026 10:00 UTC (in 1 week).")


def test_on_grace_says_when_the_payment_failed_and_until_when_the_store_keeps_access():
    s = sub(Status.ON_GRACE, expires_at=datetime(2026, 12, 3, 10, 0, tzinfo=UTC), grace_until=NOW + 2 * DAY)
    e = explain(s, now=NOW, change=change(Status.ACTIVE, Status.ON_GRACE, datetime(2026, 12, 3, 10, 0, tzinfo=UTC)))
    assert e.label == "In grace period"
    assert e.line == ("In grace period: the renewal payment failed on 3 Dec 2026 10:00 UTC (5 days ago); Google "
                      "keeps access until 10 Dec 2026 10:00 UTC (in 2 days) while it retries.")


def test_on_hold():
    e = explain(sub(Status.ON_HOLD, expires_at=NOW - 5 * DAY), now=NOW,
                change=change(Status.ON_GRACE, Status.ON_HOLD, NOW - 2 * DAY))
    assert e.line == ("On hold: the renewal payment failed and no grace period is left: no access since "
                      "6 Dec 2026 10:00 UTC (2 days ago), until the user fixes the payment method in Google Play.")


def test_paused():
    e = explain(sub(Status.PAUSED, current_period_end=NOW + 20 * DAY), now=NOW,
                change=change(Status.ACTIVE, Status.PAUSED, NOW - DAY))
    assert e.line == ("Paused: the user paused it at Google: no access since 7 Dec 2026 10:00 UTC (1 day ago); it "
                      "resumes on 28 Dec 2026 10:00 UTC (in 2 weeks) unless the user resumes it sooner.")


def test_expired_says_why():
    s = sub(Status.EXPIRED, Provider.APPLE, expires_at=NOW - 3 * DAY, ended_at=NOW - 3 * DAY)
    e = explain(s, now=NOW, change=change(Status.ON_HOLD, Status.EXPIRED, NOW - 3 * DAY))
    assert e.line == ("Expired: access ended on 5 Dec 2026 10:00 UTC (3 days ago); no access. The renewal payment "
                      "was never recovered.")
    e = explain(s, now=NOW, change=change(Status.CANCELED, Status.EXPIRED, NOW - 3 * DAY))
    assert e.line.endswith("It had been canceled and did not renew.")


def test_an_entitled_status_past_its_end_reads_expired():
    s = sub(Status.ACTIVE, Provider.STRIPE, expires_at=NOW - timedelta(hours=5), auto_renew=True)
    e = explain(s, now=NOW)
    assert (e.status, e.label) == ("EXPIRED", "Expired")
    assert e.line.startswith("Expired: access ended on 8 Dec 2026 05:00 UTC (5 hours ago); no access. The stored "
                             "status still says it is entitled")


def test_refunded_by_the_store():
    refund = Transaction(kind=TransactionKind.REFUND, occurred_at=datetime(2026, 12, 2, 9, 30, tzinfo=UTC))
    e = explain(sub(Status.REVOKED, Provider.APPLE), now=NOW, refund=refund,
                change=change(Status.ACTIVE, Status.REVOKED, refund.occurred_at))
    assert (e.status, e.label) == ("REVOKED", "Refunded")
    assert e.line == "Refunded by Apple on 2 Dec 2026 09:30 UTC (6 days ago): access revoked."
    chargeback = Transaction(kind=TransactionKind.CHARGEBACK, occurred_at=NOW - DAY)
    assert explain(sub(Status.REVOKED, Provider.STRIPE), now=NOW, refund=chargeback).line.startswith(
        "Charged back at Stripe on 7 Dec 2026")


def test_revoked_without_money_names_the_store():
    e = explain(sub(Status.REVOKED), now=NOW, change=change(Status.ACTIVE, Status.REVOKED, NOW - timedelta(hours=1)))
    assert e.line == "Revoked: revoked by Google on 8 Dec 2026 09:00 UTC (1 hour ago): access ended at once."


@pytest.mark.django_db
def test_from_the_database_a_staff_revocation_names_who_and_why():
    agent = UserFactory(username="dave")
    s = SubscriptionFactory(provider=Provider.STRIPE, status=Status.ACTIVE)
    subscription_revoke(subscription=s, reason="fraud report", staff_user=agent)
    s.refresh_from_db()
    e = explain_subscription(s, now=datetime.now(UTC))
    assert e.label == "Revoked"
    assert e.line.startswith("Revoked: revoked by dave on ") and e.line.endswith(
        " (fraud report): access ended at once.")


@pytest.mark.django_db
def test_from_the_database_grace_reads_its_history():
    apply_snapshot(snapshot(Status.ACTIVE, 0, provider=Provider.GOOGLE), Cause(CauseKind.WEBHOOK))
    failed_at = datetime.now(UTC) - timedelta(minutes=30)
    apply_snapshot(snapshot(Status.ON_GRACE, at=failed_at, provider=Provider.GOOGLE,
                            grace_until=datetime.now(UTC) + 3 * DAY), Cause(CauseKind.WEBHOOK))
    s = Subscription.objects.get()
    line = explain_subscription(s, now=datetime.now(UTC)).line
    assert line.startswith(f"In grace period: the renewal payment failed on {failed_at:%-d %b %Y %H:%M} UTC "
                           f"(30 minutes ago); Google keeps access until ")
    assert "(in 2 days)" in line or "(in 3 days)" in line


@pytest.mark.parametrize("status", list(Status))
def test_every_status_reads_as_words_not_a_code(status):
    e = explain(sub(status, expires_at=NOW + DAY, grace_until=NOW + DAY), now=NOW)
    assert e.line.startswith(f"{e.label}: ") and status.value not in e.line.split(":")[0]
