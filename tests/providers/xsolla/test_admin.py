"""Xsolla's staff actions (billing/providers/xsolla/admin.py) through the admin's own HTTP views and the
subscriptions API fake (requests, HTTP Basic auth): cancel now or at period end, and cancel with a
refund of the last payment (the API's only refund), which needs the refund permission."""


from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from audit.models import AuditEntry
from billing.models import Subscription
from billing.statuses import Status
from tests.factories import UserFactory

from .conftest import MERCHANT_ID, PROJECT_ID

pytestmark = pytest.mark.django_db

PUT_PATH = f"/projects/{PROJECT_ID}/users/1234567/subscriptions/10"


def action_url(sub: Subscription, name: str) -> str:
    return f"/admin/billing/subscription/{sub.pk}/store-action/{name}/"


@pytest.fixture
def lead(client):
    user = UserFactory(username="support-lead")
    client.force_login(user)
    return user


def puts(fake) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "PUT"]


def test_cancel_now_ends_access_at_xsolla_and_here(client, fake_xsolla, xsolla_sub, lead):
    form = client.get(action_url(xsolla_sub, "xsolla_cancel"))
    assert b'name="reason"' in form.content and b'name="when"' in form.content
    done = client.post(action_url(xsolla_sub, "xsolla_cancel"), {"apply": "1", "when": "now", "reason": "abuse"},
                       follow=True)
    assert "canceled now at Xsolla, and re-read" in done.content.decode()
    [put] = puts(fake_xsolla)
    assert put["path"] == PUT_PATH and put["body"] == {"status": "canceled"}
    assert fake_xsolla.subscriptions["10"]["status"] == "canceled" and fake_xsolla.refunded == []
    xsolla_sub.refresh_from_db()
    assert xsolla_sub.status == Status.EXPIRED
    assert AuditEntry.objects.get(action="store_cancel_now").reason == "abuse"


def test_cancel_at_period_end_is_non_renewing(client, fake_xsolla, xsolla_sub, lead):
    client.post(action_url(xsolla_sub, "xsolla_cancel"), {"apply": "1", "when": "period_end", "reason": "asked"})
    assert puts(fake_xsolla)[0]["body"] == {"status": "non_renewing"}
    xsolla_sub.refresh_from_db()
    assert xsolla_sub.status == Status.CANCELED and xsolla_sub.is_entitled(timezone.now())


def test_cancel_and_refund_sends_cancel_subscription_payment(client, fake_xsolla, xsolla_sub, lead):
    done = client.post(action_url(xsolla_sub, "xsolla_cancel_and_refund"), {"apply": "1", "reason": "charged twice"},
                       follow=True)
    assert "refund of the last payment, and re-read" in done.content.decode()
    assert puts(fake_xsolla)[0]["body"] == {"status": "canceled", "cancel_subscription_payment": True}
    assert fake_xsolla.refunded == ["10"]
    xsolla_sub.refresh_from_db()
    assert xsolla_sub.status == Status.EXPIRED
    entry = AuditEntry.objects.get(action="store_refund")
    assert entry.actor_user == lead and entry.details["provider"] == "xsolla"


def test_without_the_refund_permission_no_refund(client, fake_xsolla, xsolla_sub):
    agent = UserFactory(username="agent", is_superuser=False)
    agent.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="billing", codename__in=["view_subscription", "change_subscription"]))
    client.force_login(agent)
    page = client.get(f"/admin/billing/subscription/{xsolla_sub.pk}/change/")
    assert action_url(xsolla_sub, "xsolla_cancel").encode() in page.content
    assert action_url(xsolla_sub, "xsolla_cancel_and_refund").encode() not in page.content
    assert action_url(xsolla_sub, "xsolla_refund_payment").encode() not in page.content
    assert client.post(action_url(xsolla_sub, "xsolla_cancel_and_refund"),
                       {"apply": "1", "reason": "x"}).status_code == 403
    assert puts(fake_xsolla) == [] and fake_xsolla.refunded == []


def test_xsolla_failing_is_shown_and_nothing_changes(client, fake_xsolla, xsolla_sub, lead):
    fake_xsolla.fail_next(503)
    page = client.post(action_url(xsolla_sub, "xsolla_cancel"), {"apply": "1", "when": "now", "reason": "r"},
                       follow=True)
    assert "Xsolla answered 503" in page.content.decode()
    assert fake_xsolla.subscriptions["10"]["status"] == "active"
    xsolla_sub.refresh_from_db()
    assert xsolla_sub.status == Status.ACTIVE and not AuditEntry.objects.exists()


def test_refund_the_latest_payment_in_full_keeps_the_subscription(client, fake_xsolla, xsolla_sub, paid, lead):
    done = client.post(action_url(xsolla_sub, "xsolla_refund_payment"), {"apply": "1", "amount": "",
                                                                          "reason": "charged by mistake"}, follow=True)
    assert "refund requested at Xsolla: The request for a refund has been accepted" in done.content.decode()
    [request] = fake_xsolla.refund_requests
    assert request == {"transaction": "1", "kind": "refund", "description": "charged by mistake"}
    assert fake_xsolla.payments["1"]["status"] == "refunded"
    assert puts(fake_xsolla)[-1]["path"] == f"/merchants/{MERCHANT_ID}/reports/transactions/1/refund"
    xsolla_sub.refresh_from_db()
    assert xsolla_sub.status == Status.ACTIVE  # the money moves when Xsolla's refund webhook comes
    entry = AuditEntry.objects.get(action="store_refund")
    assert entry.details["transaction"] == "1" and entry.details["full"] is True


def test_partial_refund_of_the_latest_payment(client, fake_xsolla, xsolla_sub, paid, lead):
    client.post(action_url(xsolla_sub, "xsolla_refund_payment"), {"apply": "1", "amount": "2.50", "reason": "outage"})
    [request] = fake_xsolla.refund_requests
    assert (request["kind"], request["refund_amount"]) == ("partial_refund", 2.5)
    assert fake_xsolla.payments["1"]["refunded"] == 2.5


def test_a_refund_above_the_payment_is_refused_before_xsolla_is_asked(client, fake_xsolla, xsolla_sub, paid, lead):
    page = client.post(action_url(xsolla_sub, "xsolla_refund_payment"), {"apply": "1", "amount": "10",
                                                                          "reason": "x"}, follow=True)
    assert "At most 9.99 USD was paid in transaction 1" in page.content.decode()
    assert fake_xsolla.refund_requests == [] and not AuditEntry.objects.exists()


def test_xsolla_refusing_a_refund_is_shown(client, fake_xsolla, xsolla_sub, paid, lead):
    fake_xsolla.payments["1"]["status"] = "canceled"
    page = client.post(action_url(xsolla_sub, "xsolla_refund_payment"), {"apply": "1", "amount": "", "reason": "x"},
                       follow=True)
    assert "Xsolla answered 422" in page.content.decode() and "Incorrect payment status" in page.content.decode()
    assert not AuditEntry.objects.exists()


def test_postpone_the_next_charge_moves_the_access_end(client, fake_xsolla, xsolla_sub, lead):
    before = xsolla_sub.expires_at
    done = client.post(action_url(xsolla_sub, "xsolla_postpone"), {"apply": "1", "days": "10", "reason": "outage"},
                       follow=True)
    assert "next charge postponed by 10 days at Xsolla" in done.content.decode()
    assert puts(fake_xsolla)[0]["body"] == {"timeshift": {"type": "day", "value": "10"}}
    assert fake_xsolla.postponed == [("10", "day", 10)]
    xsolla_sub.refresh_from_db()
    assert xsolla_sub.expires_at - before == timedelta(days=10) and xsolla_sub.status == Status.ACTIVE
    assert AuditEntry.objects.get(action="store_extend").details["days"] == 10
