"""Stripe's staff actions in the subscriptions admin (billing/providers/stripe/admin.py): each through the
admin's own HTTP views — the button on the subscription page, its confirmation page with a reason — then
to the fake Stripe through the stripe library, then Stripe's new state re-read and shown on the page,
with who and why in the audit log. Refunds need their own permission."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from audit.models import AuditEntry
from billing.models import Subscription, Transaction
from billing.providers.staff_changes import REFUND_PERMISSION, StoreActionError
from billing.providers.stripe import services
from billing.snapshots import TransactionKind
from billing.statuses import Status
from tests.factories import UserFactory

from .conftest import deliver_events

pytestmark = pytest.mark.django_db


def action_url(sub: Subscription, name: str) -> str:
    return f"/admin/billing/subscription/{sub.pk}/store-action/{name}/"


@pytest.fixture
def stripe_sub(fake_stripe, monthly):
    customer = fake_stripe.customer_create({"email": "u42@example.com", "metadata": {"user_id": "42"}})
    sub = fake_stripe.start_subscription(customer, monthly, payment_method="pm_card_visa", metadata={"user_id": "42"})
    deliver_events(fake_stripe.take_events())
    return Subscription.objects.get(provider="stripe", provider_subscription_id=sub["id"])


@pytest.fixture
def lead(client):
    user = UserFactory(username="support-lead")
    client.force_login(user)
    return user


def fixer(username="agent", *, refund=False):
    """Staff who may fix subscriptions (change_subscription) and, with `refund`, refund at the store."""
    user = UserFactory(username=username, is_superuser=False)
    codenames = ["view_subscription", "change_subscription"] + (["refund_at_store"] if refund else [])
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="billing", codename__in=codenames))
    return user


def requests_to(fake, method: str, path_start: str) -> list[dict]:
    return [params for m, path, params in fake.requests if m == method and path.startswith(path_start)]


def test_cancel_now_from_the_subscription_page_with_a_reason(client, fake_stripe, stripe_sub, lead):
    page = client.get(f"/admin/billing/subscription/{stripe_sub.pk}/change/")
    assert action_url(stripe_sub, "stripe_cancel").encode() in page.content  # the button

    form = client.get(action_url(stripe_sub, "stripe_cancel"))
    assert form.status_code == 200 and b"Cancel at Stripe" in form.content and b'name="reason"' in form.content
    assert requests_to(fake_stripe, "DELETE", "/v1/subscriptions/") == []  # nothing before staff confirm

    done = client.post(action_url(stripe_sub, "stripe_cancel"),
                       {"apply": "1", "when": "now", "reason": "fraud report #812"}, follow=True)
    assert done.status_code == 200
    assert done.redirect_chain[-1][0] == f"/admin/billing/subscription/{stripe_sub.pk}/change/"
    assert b"canceled now at Stripe, and re-read (ACTIVE &rarr; EXPIRED)" in done.content \
        or b"canceled now at Stripe, and re-read (ACTIVE \xe2\x86\x92 EXPIRED)" in done.content
    assert len(requests_to(fake_stripe, "DELETE", f"/v1/subscriptions/{stripe_sub.provider_subscription_id}")) == 1
    assert fake_stripe.objects[stripe_sub.provider_subscription_id]["status"] == "canceled"
    stripe_sub.refresh_from_db()
    assert stripe_sub.status == Status.EXPIRED and not stripe_sub.is_entitled(timezone.now())
    change = stripe_sub.status_changes.latest("recorded_at")
    assert change.staff_user == lead and "fraud report #812" in change.note
    entry = AuditEntry.objects.get(action="store_cancel_now")
    assert (entry.actor_user, entry.reason, entry.subscription_id) == (lead, "fraud report #812", stripe_sub.pk)
    assert entry.subscriber == stripe_sub.subscriber
    assert entry.details["new_status"] == "EXPIRED"


def test_cancel_at_period_end_from_the_list_keeps_access_until_the_period_ends(client, fake_stripe, stripe_sub,
                                                                               lead):
    expires = stripe_sub.expires_at
    client.post("/admin/billing/subscription/", {"action": "stripe_cancel", "_selected_action": [stripe_sub.pk],
                                                 "apply": "1", "when": "period_end", "reason": "asked by mail"})
    [update] = requests_to(fake_stripe, "POST", f"/v1/subscriptions/{stripe_sub.provider_subscription_id}")
    assert update["cancel_at_period_end"] == "true"
    assert fake_stripe.objects[stripe_sub.provider_subscription_id]["cancel_at_period_end"] is True
    stripe_sub.refresh_from_db()
    assert stripe_sub.status == Status.CANCELED and stripe_sub.expires_at == expires
    assert stripe_sub.is_entitled(timezone.now())
    assert AuditEntry.objects.get(action="store_cancel_period_end").reason == "asked by mail"


def test_full_refund_of_the_latest_invoice_revokes_and_records_the_refund(client, fake_stripe, stripe_sub, lead):
    charge = fake_stripe.latest_charge(stripe_sub.provider_subscription_id)
    form = client.get(action_url(stripe_sub, "stripe_refund"))
    assert b'name="amount"' in form.content and b'name="reason"' in form.content
    assert "9.99 USD paid, 0.00 USD refunded already, 9.99 USD can be refunded" in form.content.decode()

    client.post(action_url(stripe_sub, "stripe_refund"), {"apply": "1", "amount": "", "reason": "double charge"})
    [refund] = requests_to(fake_stripe, "POST", "/v1/refunds")
    assert (refund["charge"], refund["amount"], refund["reason"]) == (charge["id"], "999", "requested_by_customer")
    assert refund["metadata"]["staff_user"] == "support-lead"
    assert fake_stripe.objects[charge["id"]]["refunded"] is True
    stripe_sub.refresh_from_db()
    assert stripe_sub.status == Status.REVOKED
    [money_back] = Transaction.objects.filter(subscription=stripe_sub, kind=TransactionKind.REFUND)
    assert (money_back.amount_minor, money_back.currency) == (999, "USD")
    entry = AuditEntry.objects.get(action="store_refund")
    assert entry.reason == "double charge"
    assert entry.details | {"amount_minor": 999, "currency": "USD", "full": True} == entry.details

    # The charge.refunded Stripe sends afterwards re-reads the same: no second refund row.
    deliver_events(fake_stripe.take_events())
    assert Transaction.objects.filter(subscription=stripe_sub, kind=TransactionKind.REFUND).count() == 1


def test_partial_refund_in_major_units_leaves_access(client, fake_stripe, stripe_sub, lead):
    page = client.post(action_url(stripe_sub, "stripe_refund"),
                       {"apply": "1", "amount": "2.50", "reason": "goodwill: outage"}, follow=True)
    assert b"refunded at Stripe, and re-read" in page.content
    [refund] = requests_to(fake_stripe, "POST", "/v1/refunds")
    assert refund["amount"] == "250"
    stripe_sub.refresh_from_db()
    assert stripe_sub.status == Status.ACTIVE
    assert Transaction.objects.get(subscription=stripe_sub, kind=TransactionKind.REFUND).amount_minor == 250


@pytest.mark.parametrize(("amount", "complaint"), [
    ("12.00", "At most 9.99 USD can be refunded"),
    ("1.005", "more decimals than USD allows"),
])
def test_a_refund_above_what_was_paid_is_refused_before_stripe_is_asked(client, fake_stripe, stripe_sub, lead,
                                                                       amount, complaint):
    page = client.post(action_url(stripe_sub, "stripe_refund"), {"apply": "1", "amount": amount, "reason": "r"},
                       follow=True)
    assert complaint in page.content.decode()
    assert requests_to(fake_stripe, "POST", "/v1/refunds") == []
    assert not AuditEntry.objects.exists()


def test_a_second_refund_takes_only_what_is_left(fake_stripe, stripe_sub, lead):
    services.invoice_refund_at_stripe(subscription=stripe_sub, amount=Decimal("4.00"), reason="part", staff_user=lead)
    target = services.latest_paid_invoice(subscription=stripe_sub)
    assert (target.paid_minor, target.refunded_minor, target.refundable_minor) == (999, 400, 599)
    with pytest.raises(StoreActionError, match=r"At most 5\.99 USD"):
        services.invoice_refund_at_stripe(subscription=stripe_sub, amount=Decimal("6"), reason="more", staff_user=lead)
    services.invoice_refund_at_stripe(subscription=stripe_sub, amount=None, reason="the rest", staff_user=lead)
    assert [r["amount"] for r in requests_to(fake_stripe, "POST", "/v1/refunds")] == ["400", "599"]
    stripe_sub.refresh_from_db()
    assert stripe_sub.status == Status.REVOKED  # fully refunded now


def test_staff_without_the_refund_permission_cannot_refund(client, fake_stripe, stripe_sub):
    client.force_login(fixer())
    page = client.get(f"/admin/billing/subscription/{stripe_sub.pk}/change/")
    assert action_url(stripe_sub, "stripe_cancel").encode() in page.content
    assert action_url(stripe_sub, "stripe_refund").encode() not in page.content  # no button
    changelist = client.get("/admin/billing/subscription/")
    assert b'value="stripe_refund"' not in changelist.content and b'value="stripe_cancel"' in changelist.content

    assert client.get(action_url(stripe_sub, "stripe_refund")).status_code == 403
    assert client.post(action_url(stripe_sub, "stripe_refund"),
                       {"apply": "1", "amount": "", "reason": "x"}).status_code == 403
    client.post("/admin/billing/subscription/", {"action": "stripe_refund", "_selected_action": [stripe_sub.pk],
                                                 "apply": "1", "amount": "", "reason": "x"})
    with pytest.raises(StoreActionError, match="refund_at_store"):
        services.invoice_refund_at_stripe(subscription=stripe_sub, amount=None, reason="x", staff_user=fixer("b"))
    assert requests_to(fake_stripe, "POST", "/v1/refunds") == []
    stripe_sub.refresh_from_db()
    assert stripe_sub.status == Status.ACTIVE


def test_staff_with_the_refund_permission_can_refund(client, fake_stripe, stripe_sub):
    user = fixer("refunder", refund=True)
    assert user.has_perm(REFUND_PERMISSION)
    client.force_login(user)
    page = client.get(f"/admin/billing/subscription/{stripe_sub.pk}/change/")
    assert action_url(stripe_sub, "stripe_refund").encode() in page.content
    client.post(action_url(stripe_sub, "stripe_refund"), {"apply": "1", "amount": "1", "reason": "goodwill"})
    assert [r["amount"] for r in requests_to(fake_stripe, "POST", "/v1/refunds")] == ["100"]
    assert AuditEntry.objects.get(action="store_refund").actor_user == user


def test_staff_who_may_only_view_get_no_store_action(client, fake_stripe, stripe_sub):
    viewer = UserFactory(username="viewer", is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="billing", codename="view_subscription"))
    client.force_login(viewer)
    page = client.get(f"/admin/billing/subscription/{stripe_sub.pk}/change/")
    assert b"store-action/" not in page.content
    assert client.get(action_url(stripe_sub, "stripe_cancel")).status_code == 403


def test_a_store_error_is_shown_and_nothing_changes(client, fake_stripe, stripe_sub, lead):
    fake_stripe.fail(r"DELETE /v1/subscriptions/", status=500)
    page = client.post(action_url(stripe_sub, "stripe_cancel"), {"apply": "1", "when": "now", "reason": "r"},
                       follow=True)
    assert "Stripe did not answer" in page.content.decode()
    assert fake_stripe.objects[stripe_sub.provider_subscription_id]["status"] == "active"
    stripe_sub.refresh_from_db()
    assert stripe_sub.status == Status.ACTIVE
    assert not AuditEntry.objects.exists()


def test_an_action_of_another_store_is_not_offered(client, fake_stripe, stripe_sub, lead):
    assert client.get(action_url(stripe_sub, "google_defer_renewal")).status_code == 404
    assert client.get(action_url(stripe_sub, "no_such_action")).status_code == 404
