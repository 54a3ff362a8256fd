"""Stripe events → unified state, at the adapter level: authenticate → parse → apply_snapshot, the
way the webhook pipeline calls them. Stripe's side is the local fake (tests/fakes/stripe.py)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.models import Product, StatusChange, Subscription, Transaction
from billing.providers.base import InboundEvent, TransientError
from billing.selectors import check_answer
from billing.snapshots import Cause, CauseKind, TransactionKind
from billing.statuses import Status
from tests.factories import ProductFactory, SubscriberFactory

from .conftest import event_body, process, process_all, signed_headers

pytestmark = pytest.mark.django_db


@pytest.fixture
def monthly(fake_stripe):
    product = fake_stripe.add_product("Premium")
    return fake_stripe.add_price(product, unit_amount=999, currency="usd", interval="month")


@pytest.fixture
def yearly(fake_stripe, monthly):
    return fake_stripe.add_price(fake_stripe.objects[monthly["product"]], unit_amount=9900, interval="year")


def customer(fake, user_id="42"):
    return fake.customer_create({"email": f"u{user_id}@example.com", "metadata": {"user_id": user_id}})


def subscribe(fake, price, user_id="42", **kwargs):
    kwargs.setdefault("payment_method", "pm_card_visa")
    return fake.start_subscription(customer(fake, user_id), price, metadata={"user_id": user_id}, **kwargs)


def row(sub) -> Subscription:
    return Subscription.objects.select_related("subscriber").get(provider="stripe", provider_subscription_id=sub["id"])


def inbound(verified, body: bytes) -> InboundEvent:
    return InboundEvent(id=2, provider="stripe", dedupe_key=verified.dedupe_key, event_type=verified.event_type,
                        payload=verified.payload, body=body, headers={}, received_at=timezone.now(),
                        occurred_at=verified.occurred_at)


def period_end(sub) -> datetime:
    return datetime.fromtimestamp(sub["items"]["data"][0]["current_period_end"], tz=UTC)


def test_subscription_created_and_paid_subscribes_the_user(fake_stripe, stripe_adapter, monthly):
    ProductFactory(provider="stripe", store_product_id=monthly["id"], entitlements=["premium"])
    sub = subscribe(fake_stripe, monthly)
    types = [e["type"] for e in fake_stripe.events]
    assert "customer.subscription.created" in types and "invoice.paid" in types
    process_all(stripe_adapter, fake_stripe.take_events())

    r = row(sub)
    assert r.status == Status.ACTIVE
    assert r.subscriber.external_id == "42"
    assert r.subscriber.stripe_customer_id == sub["customer"]
    assert (r.amount_minor, r.currency, r.period_unit, r.period_value) == (999, "USD", "month", 1)
    assert r.expires_at == period_end(sub)  # from the subscription item: current API versions keep it there
    assert r.auto_renew is True
    [purchase] = Transaction.objects.filter(subscription=r)
    assert (purchase.kind, purchase.amount_minor, purchase.provider_transaction_id) == (
        TransactionKind.PURCHASE, 999, sub["latest_invoice"])
    answer = check_answer("42")
    assert answer["is_subscribed"] is True and answer["entitlements"] == ["premium"]
    product = Product.objects.get(provider="stripe", store_product_id=monthly["id"])
    assert (product.label, product.price_minor, product.currency) == ("Premium / month", 999, "USD")
    assert list(product.entitlements.values_list("name", flat=True)) == ["premium"]  # staff's mapping kept


def test_renewal_paid_extends_the_period_and_records_a_renewal(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly)
    process_all(stripe_adapter, fake_stripe.take_events())
    first_end = row(sub).expires_at

    invoice = fake_stripe.renew(sub["id"])
    events = fake_stripe.take_events()
    paid = next(e for e in events if e["type"] == "invoice.paid")
    process(stripe_adapter, event_body(paid))  # invoice.paid alone is enough to provision

    r = row(sub)
    assert r.status == Status.ACTIVE
    assert r.expires_at > first_end and r.expires_at == period_end(fake_stripe.objects[sub["id"]])
    renewal = Transaction.objects.get(provider_transaction_id=invoice["id"])
    assert (renewal.kind, renewal.amount_minor) == (TransactionKind.RENEWAL, 999)


def test_failed_renewal_is_grace_then_hold_then_expired(fake_stripe, stripe_adapter, monthly,
                                                       django_capture_on_commit_callbacks):
    sub = subscribe(fake_stripe, monthly)
    process_all(stripe_adapter, fake_stripe.take_events())

    fake_stripe.renew(sub["id"], payment_method="pm_card_chargeCustomerFail")
    failed = [e for e in fake_stripe.take_events() if e["type"] == "invoice.payment_failed"]
    process_all(stripe_adapter, failed)
    assert row(sub).status == Status.ON_GRACE
    assert check_answer("42")["is_subscribed"] is True  # Stripe is retrying: access is kept

    fake_stripe.set_status(sub["id"], "unpaid")
    with django_capture_on_commit_callbacks(execute=True):  # refreshes the cached check answer
        process_all(stripe_adapter, fake_stripe.take_events())
    assert row(sub).status == Status.ON_HOLD
    assert check_answer("42")["is_subscribed"] is False

    fake_stripe.set_status(sub["id"], "canceled")
    [deleted] = fake_stripe.take_events()
    assert deleted["type"] == "customer.subscription.deleted"
    process(stripe_adapter, event_body(deleted))
    r = row(sub)
    assert r.status == Status.EXPIRED and r.ended_at is not None
    assert [c.new_status for c in r.status_changes.order_by("id")] == [
        Status.ACTIVE, Status.ON_GRACE, Status.ON_HOLD, Status.EXPIRED]


def test_trial_pause_resume_and_trial_will_end(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly, trial_days=7, payment_method=None)
    process_all(stripe_adapter, fake_stripe.take_events())
    r = row(sub)
    assert r.status == Status.TRIAL
    assert r.expires_at == datetime.fromtimestamp(sub["trial_end"], tz=UTC)
    assert not Transaction.objects.exists()  # a trial start moves no money

    fake_stripe.emit("customer.subscription.trial_will_end", fake_stripe.objects[sub["id"]])
    result = process_all(stripe_adapter, fake_stripe.take_events())[0]
    assert result.results[0].outcome == "unchanged" and row(sub).status == Status.TRIAL

    fake_stripe.set_status(sub["id"], "paused")  # the trial ended without a payment method
    process_all(stripe_adapter, fake_stripe.take_events())
    assert row(sub).status == Status.PAUSED
    assert check_answer("42")["is_subscribed"] is False

    fake_stripe.resume(sub["id"])
    [resumed] = fake_stripe.take_events()
    assert resumed["type"] == "customer.subscription.resumed"
    process(stripe_adapter, event_body(resumed))
    assert row(sub).status == Status.ACTIVE


def test_cancel_at_period_end_is_canceled_with_access_until_the_period_end(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly)
    process_all(stripe_adapter, fake_stripe.take_events())
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    process_all(stripe_adapter, fake_stripe.take_events())
    r = row(sub)
    assert r.status == Status.CANCELED and r.auto_renew is False
    assert r.expires_at == period_end(sub) and r.canceled_at is not None
    assert check_answer("42")["is_subscribed"] is True


def test_a_duplicate_delivery_has_no_second_effect(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly)
    events = fake_stripe.take_events()
    process_all(stripe_adapter, events)
    changes, transactions = StatusChange.objects.count(), Transaction.objects.count()
    process_all(stripe_adapter, events)
    assert (StatusChange.objects.count(), Transaction.objects.count()) == (changes, transactions)
    assert row(sub).status == Status.ACTIVE


def test_out_of_order_updated_before_created_with_stripe_reachable(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly)
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    created, *_, updated = [e for e in fake_stripe.take_events() if e["type"].startswith("customer.subscription")]
    process(stripe_adapter, event_body(updated))
    process(stripe_adapter, event_body(created))  # late: its copy says active, Stripe says canceling
    assert row(sub).status == Status.CANCELED


def test_out_of_order_from_the_events_own_copies_never_regresses(fake_stripe, stripe_adapter, monthly):
    """Stripe no longer has the subscription (404): each event's own copy counts, as of its `created`."""
    sub = subscribe(fake_stripe, monthly)
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    created, *_, updated = [e for e in fake_stripe.take_events() if e["type"].startswith("customer.subscription")]
    del fake_stripe.objects[sub["id"]]
    process(stripe_adapter, event_body(updated))
    result = process(stripe_adapter, event_body(created))
    assert result.results[0].outcome == "stale"
    r = row(sub)
    assert r.status == Status.CANCELED
    assert r.status_changes.filter(ignored=True, new_status=Status.ACTIVE).exists()


def test_without_a_user_the_subscription_is_an_orphan_until_the_customer_is_known(fake_stripe, stripe_adapter,
                                                                                    monthly):
    stranger = fake_stripe.customer_create({"email": "x@example.com"})
    sub = fake_stripe.start_subscription(stranger, monthly, payment_method="pm_card_visa")
    process_all(stripe_adapter, fake_stripe.take_events())
    assert row(sub).subscriber is None  # kept for support to link, never dropped

    known = SubscriberFactory(external_id="77")
    known.stripe_customer_id = stranger["id"]
    known.save()
    sub2 = fake_stripe.start_subscription(stranger, monthly, payment_method="pm_card_visa")
    process_all(stripe_adapter, fake_stripe.take_events())
    assert row(sub2).subscriber == known  # the customer's known subscriber


def test_checkout_session_links_the_user_by_client_reference_id(fake_stripe, stripe_adapter, monthly):
    session = fake_stripe.checkout_session_create({
        "mode": "subscription", "client_reference_id": "55", "line_items": [{"price": monthly["id"]}],
        "success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"})
    completed = fake_stripe.complete_checkout(session["id"])
    events = fake_stripe.take_events()
    # Only the session names the user here (no subscription_data.metadata): it still links.
    process(stripe_adapter, event_body(next(e for e in events if e["type"] == "checkout.session.completed")))
    r = Subscription.objects.get(provider_subscription_id=completed["subscription"])
    assert r.subscriber.external_id == "55" and r.status == Status.ACTIVE
    assert r.subscriber.stripe_customer_id == completed["customer"]
    process_all(stripe_adapter, events)  # the subscription's own events then find the user by the customer
    assert Subscription.objects.get(pk=r.pk).subscriber.external_id == "55"


def test_full_refund_of_the_current_period_revokes_until_a_new_payment(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly)
    process_all(stripe_adapter, fake_stripe.take_events())
    charge = fake_stripe.latest_charge(sub["id"])
    refund = fake_stripe.refund(charge["id"])
    [refunded] = fake_stripe.take_events()
    assert "refunds" not in refunded["data"]["object"]  # current API versions: the refunds are listed
    process(stripe_adapter, event_body(refunded))

    r = row(sub)
    assert r.status == Status.REVOKED
    assert check_answer("42")["is_subscribed"] is False
    t = Transaction.objects.get(provider_transaction_id=refund["id"])
    assert (t.kind, t.amount_minor, t.currency) == (TransactionKind.REFUND, 999, "USD")

    # Stripe still says active: an unrelated update does not give access back...
    fake_stripe.subscription_update({"metadata": {"note": "x"}}, sub["id"])
    process_all(stripe_adapter, fake_stripe.take_events())
    assert row(sub).status == Status.REVOKED
    # ...a new paid period does.
    fake_stripe.renew(sub["id"])
    process_all(stripe_adapter, fake_stripe.take_events())
    assert row(sub).status == Status.ACTIVE


def test_partial_refund_records_money_and_keeps_access(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly)
    process_all(stripe_adapter, fake_stripe.take_events())
    refund = fake_stripe.refund(fake_stripe.latest_charge(sub["id"])["id"], amount=300)
    process_all(stripe_adapter, fake_stripe.take_events())
    assert row(sub).status == Status.ACTIVE
    assert Transaction.objects.get(provider_transaction_id=refund["id"]).amount_minor == 300


def test_dispute_revokes_access_and_records_a_chargeback(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly)
    process_all(stripe_adapter, fake_stripe.take_events())
    dispute = fake_stripe.dispute(fake_stripe.latest_charge(sub["id"])["id"])
    process_all(stripe_adapter, fake_stripe.take_events())
    assert row(sub).status == Status.REVOKED
    t = Transaction.objects.get(provider_transaction_id=dispute["id"])
    assert (t.kind, t.amount_minor) == (TransactionKind.CHARGEBACK, 999)


def test_zero_decimal_currency_amounts_are_kept_as_given(fake_stripe, stripe_adapter):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium JP"), unit_amount=980, currency="jpy")
    sub = subscribe(fake_stripe, price, user_id="jp1")
    process_all(stripe_adapter, fake_stripe.take_events())
    r = row(sub)
    assert (r.amount_minor, r.currency) == (980, "JPY")  # ¥980, not ¥9.80
    t = Transaction.objects.get(subscription=r)
    assert (t.amount_minor, t.currency) == (980, "JPY")
    product = Product.objects.get(store_product_id=price["id"])
    assert (product.price_minor, product.currency) == (980, "JPY")


def test_stripe_unreachable_while_parsing_is_transient(fake_stripe, stripe_adapter, monthly):
    sub = subscribe(fake_stripe, monthly)
    created = fake_stripe.take_events()[1]
    assert created["type"] == "customer.subscription.created"
    fake_stripe.fail(r"GET /v1/subscriptions/", status=503)
    with pytest.raises(TransientError):
        process(stripe_adapter, event_body(created))
    assert not Subscription.objects.filter(provider_subscription_id=sub["id"]).exists()
    process(stripe_adapter, event_body(created))  # the retry succeeds
    assert row(sub).status == Status.ACTIVE


def test_events_we_do_not_act_on_are_ignored(fake_stripe, stripe_adapter):
    fake_stripe.customer_create({"email": "a@example.com"})
    [created] = fake_stripe.take_events()
    result = process(stripe_adapter, event_body(created))
    assert result.parsed.snapshots == [] and "customer.created" in result.parsed.ignored_reason


def test_price_events_update_the_catalogue(fake_stripe, stripe_adapter):
    price = fake_stripe.add_price(fake_stripe.add_product("Gold"), unit_amount=4900, interval="year")
    fake_stripe.emit("price.created", price)
    process_all(stripe_adapter, fake_stripe.take_events())
    product = Product.objects.get(provider="stripe", store_product_id=price["id"])
    assert (product.label, product.period_unit, product.price_minor) == ("Gold / year", "year", 4900)


# --- status mapping of the will-not-renew and terminal cases (docs/providers/stripe.md) ---------

def _cancel_at_without_period_end(fake, sub):
    cancel_at = fake.now() + 10 * 86400  # before the period ends (30 days)
    fake.set_status(sub["id"], "active", cancel_at=cancel_at)
    return datetime.fromtimestamp(cancel_at, tz=UTC)


def _first_payment_never_made(fake, sub):
    fake.set_status(sub["id"], "incomplete_expired")  # 23 h after a failed first payment
    return datetime.fromtimestamp(fake.objects[sub["id"]]["ended_at"], tz=UTC)


def _trial_set_not_to_renew(fake, sub):
    fake.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    return datetime.fromtimestamp(sub["trial_end"], tz=UTC)


@pytest.mark.parametrize(("start", "change", "status", "entitled"), [
    ({}, _cancel_at_without_period_end, Status.CANCELED, True),
    ({"payment_method": "pm_card_chargeCustomerFail"}, _first_payment_never_made, Status.EXPIRED, False),
    ({"trial_days": 7, "payment_method": None}, _trial_set_not_to_renew, Status.CANCELED, True),
], ids=["cancel_at_set", "incomplete_expired", "trialing_cancel_at_period_end"])
def test_status_mapping_of_cases_stripe_has_no_status_for(fake_stripe, stripe_adapter, monthly,
                                                          django_capture_on_commit_callbacks,
                                                          start, change, status, entitled):
    sub = subscribe(fake_stripe, monthly, **start)
    process_all(stripe_adapter, fake_stripe.take_events())
    access_until = change(fake_stripe, sub)
    events = fake_stripe.take_events()
    assert events, "the change at Stripe sends an event"
    with django_capture_on_commit_callbacks(execute=True):
        process_all(stripe_adapter, events)

    r = row(sub)
    assert r.status == status
    assert r.expires_at == access_until
    assert r.auto_renew is False
    assert check_answer("42")["is_subscribed"] is entitled
    assert r.is_entitled(access_until - timedelta(seconds=1)) is entitled
    assert not r.is_entitled(access_until + timedelta(seconds=1))


# --- webhook-only set-up (no STRIPE_SECRET_KEY): events are applied from their own content -------

def test_without_the_api_key_a_paid_renewal_is_recorded_from_the_event(fake_stripe, stripe_adapter, monthly,
                                                                       settings):
    sub = subscribe(fake_stripe, monthly)
    created = fake_stripe.take_events()
    fake_stripe.renew(sub["id"])
    renewal_events = fake_stripe.take_events()
    settings.STRIPE_SECRET_KEY = ""  # webhook-only: Stripe cannot be asked anything
    requests_before = len(fake_stripe.requests)

    process_all(stripe_adapter, created)
    r = row(sub)
    assert r.status == Status.ACTIVE
    [purchase] = Transaction.objects.filter(subscription=r)
    assert (purchase.kind, purchase.amount_minor, purchase.currency) == (TransactionKind.PURCHASE, 999, "USD")

    paid = next(e for e in renewal_events if e["type"] == "invoice.paid")
    result = process(stripe_adapter, event_body(paid))  # alone: the subscription's own event is not needed
    renewal = Transaction.objects.get(provider_transaction_id=paid["data"]["object"]["id"])
    assert (renewal.kind, renewal.amount_minor, renewal.subscription_id) == (TransactionKind.RENEWAL, 999, r.pk)
    assert result.results[0].outcome == "unchanged" and row(sub).status == Status.ACTIVE
    assert len(fake_stripe.requests) == requests_before  # nothing was asked of Stripe

    process(stripe_adapter, event_body(paid))  # a redelivery records nothing more
    assert Transaction.objects.filter(subscription=r).count() == 2


def test_without_the_api_key_a_paid_invoice_before_its_subscription_is_retried(fake_stripe, stripe_adapter, monthly,
                                                                              settings):
    sub = subscribe(fake_stripe, monthly)
    events = fake_stripe.take_events()
    settings.STRIPE_SECRET_KEY = ""
    paid = event_body(next(e for e in events if e["type"] == "invoice.paid"))
    with pytest.raises(TransientError, match="not known yet"):
        process(stripe_adapter, paid)
    assert not Transaction.objects.exists()

    process(stripe_adapter, event_body(next(e for e in events if e["type"] == "customer.subscription.created")))
    process(stripe_adapter, paid)  # the retry
    assert Transaction.objects.get().subscription == row(sub)


def test_without_the_api_key_a_paid_invoice_never_undoes_a_newer_state(fake_stripe, stripe_adapter, monthly,
                                                                       settings):
    """An invoice carries no subscription state: it keeps the stored one, as of when it was read. A
    cancellation applied between the parse and the apply (the same drain batch) stands, even though
    the invoice's event is the newer one."""
    sub = subscribe(fake_stripe, monthly)
    process_all(stripe_adapter, fake_stripe.take_events())
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    [canceling] = fake_stripe.take_events()
    fake_stripe.renew(sub["id"])  # a last period paid (the cancellation takes effect at its end)
    paid = next(e for e in fake_stripe.take_events() if e["type"] == "invoice.paid")
    assert paid["created"] > canceling["created"]
    settings.STRIPE_SECRET_KEY = ""

    verified = stripe_adapter.authenticate(signed_headers(event_body(paid)), event_body(paid), {})
    parsed = stripe_adapter.parse(inbound(verified, event_body(paid)))
    process(stripe_adapter, event_body(canceling))
    [result] = [apply_snapshot(s, Cause(CauseKind.WEBHOOK, ref="paid")) for s in parsed.snapshots]

    assert result.outcome == "stale" and result.transactions_added == 1
    assert row(sub).status == Status.CANCELED
    assert Transaction.objects.filter(provider_transaction_id=paid["data"]["object"]["id"]).exists()


def test_without_the_api_key_a_full_refund_revokes_until_the_next_paid_period(fake_stripe, stripe_adapter, monthly,
                                                                             settings):
    sub = subscribe(fake_stripe, monthly)
    created = fake_stripe.take_events()
    charge = fake_stripe.latest_charge(sub["id"])
    refund = fake_stripe.refund(charge["id"])
    [refunded] = fake_stripe.take_events()
    # An endpoint on an older API version: the charge names its invoice and lists its refunds.
    refunded["data"]["object"].update(invoice=sub["latest_invoice"],
                                      refunds={"object": "list", "data": [refund], "has_more": False})
    fake_stripe.renew(sub["id"])
    renewal = fake_stripe.take_events()
    settings.STRIPE_SECRET_KEY = ""
    process_all(stripe_adapter, created)

    process(stripe_adapter, event_body(refunded))
    r = row(sub)
    assert r.status == Status.REVOKED and check_answer("42")["is_subscribed"] is False
    t = Transaction.objects.get(provider_transaction_id=refund["id"])
    assert (t.kind, t.amount_minor, t.subscription_id) == (TransactionKind.REFUND, 999, r.pk)

    process_all(stripe_adapter, renewal)  # the next period paid: its events' copies name a newer invoice
    assert row(sub).status == Status.ACTIVE
