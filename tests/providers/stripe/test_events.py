"""Stripe events → unified state, through the real webhook pipeline (POST /webhooks/stripe, then the
worker's drain), with Stripe's side played by the local fake (tests/fakes/stripe.py)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from celery import current_app
from djstripe.models import Subscription as MirroredSubscription

from billing.models import Outbox, Product, StatusChange, Subscription, Transaction
from billing.providers.stripe.tasks import MIRROR_PENDING, mirror_events
from billing.selectors import check_answer
from billing.snapshots import TransactionKind
from billing.statuses import Status
from tests.factories import ProductFactory, SubscriberFactory
from tests.helpers import drain, stream_events
from webhooks.models import WebhookEvent
from webhooks.replay import events_reset_for_replay

from .conftest import SECRET_KEY, deliver_body, deliver_event, deliver_events, fixture_event, retry_now

pytestmark = pytest.mark.django_db


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


def period_end(sub) -> datetime:
    return datetime.fromtimestamp(sub["items"]["data"][0]["current_period_end"], tz=UTC)


def test_subscription_created_and_paid_subscribes_the_user(fake_stripe, monthly):
    ProductFactory(provider="stripe", store_product_id=monthly["id"], entitlements=["premium"])
    sub = subscribe(fake_stripe, monthly)
    types = [e["type"] for e in fake_stripe.events]
    assert "customer.subscription.created" in types and "invoice.paid" in types
    deliver_events(fake_stripe.take_events())

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


def test_renewal_paid_extends_the_period_and_records_a_renewal(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    first_end = row(sub).expires_at

    invoice = fake_stripe.renew(sub["id"])
    events = fake_stripe.take_events()
    paid = next(e for e in events if e["type"] == "invoice.paid")
    deliver_event(paid)  # invoice.paid alone is enough to provision

    r = row(sub)
    assert r.status == Status.ACTIVE
    assert r.expires_at > first_end and r.expires_at == period_end(fake_stripe.objects[sub["id"]])
    renewal = Transaction.objects.get(provider_transaction_id=invoice["id"])
    assert (renewal.kind, renewal.amount_minor) == (TransactionKind.RENEWAL, 999)


def test_failed_renewal_is_grace_then_hold_then_expired(fake_stripe, monthly,
                                                       django_capture_on_commit_callbacks):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())

    fake_stripe.renew(sub["id"], payment_method="pm_card_chargeCustomerFail")
    failed = [e for e in fake_stripe.take_events() if e["type"] == "invoice.payment_failed"]
    deliver_events(failed)
    assert row(sub).status == Status.ON_GRACE
    assert check_answer("42")["is_subscribed"] is True  # Stripe is retrying: access is kept

    fake_stripe.set_status(sub["id"], "unpaid")
    with django_capture_on_commit_callbacks(execute=True):  # refreshes the cached check answer
        deliver_events(fake_stripe.take_events())
    assert row(sub).status == Status.ON_HOLD
    assert check_answer("42")["is_subscribed"] is False

    fake_stripe.set_status(sub["id"], "canceled")
    [deleted] = fake_stripe.take_events()
    assert deleted["type"] == "customer.subscription.deleted"
    deliver_event(deleted)
    r = row(sub)
    assert r.status == Status.EXPIRED and r.ended_at is not None
    assert [c.new_status for c in r.status_changes.order_by("id")] == [
        Status.ACTIVE, Status.ON_GRACE, Status.ON_HOLD, Status.EXPIRED]


def test_trial_pause_resume_and_trial_will_end(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly, trial_days=7, payment_method=None)
    deliver_events(fake_stripe.take_events())
    r = row(sub)
    assert r.status == Status.TRIAL
    assert r.expires_at == datetime.fromtimestamp(sub["trial_end"], tz=UTC)
    assert not Transaction.objects.exists()  # a trial start moves no money

    fake_stripe.emit("customer.subscription.trial_will_end", fake_stripe.objects[sub["id"]])
    [reminder] = deliver_events(fake_stripe.take_events())
    assert reminder.event.status == WebhookEvent.Status.PROCESSED
    assert reminder.event.outcome == f"stripe:{sub['id']} unchanged: TRIAL" and row(sub).status == Status.TRIAL

    fake_stripe.set_status(sub["id"], "paused")  # the trial ended without a payment method
    deliver_events(fake_stripe.take_events())
    assert row(sub).status == Status.PAUSED
    assert check_answer("42")["is_subscribed"] is False

    fake_stripe.resume(sub["id"])
    [resumed] = fake_stripe.take_events()
    assert resumed["type"] == "customer.subscription.resumed"
    deliver_event(resumed)
    assert row(sub).status == Status.ACTIVE


def test_cancel_at_period_end_is_canceled_with_access_until_the_period_end(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    deliver_events(fake_stripe.take_events())
    r = row(sub)
    assert r.status == Status.CANCELED and r.auto_renew is False
    assert r.expires_at == period_end(sub) and r.canceled_at is not None
    assert check_answer("42")["is_subscribed"] is True


def test_events_processed_twice_have_no_second_effect(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    changes, transactions = StatusChange.objects.count(), Transaction.objects.count()
    stored = list(WebhookEvent.objects.values_list("pk", flat=True))
    assert events_reset_for_replay(stored) == len(stored)
    drain()  # a replay: every event parsed and applied again
    assert (StatusChange.objects.count(), Transaction.objects.count()) == (changes, transactions)
    assert not WebhookEvent.objects.exclude(status__in=["processed", "ignored"]).exists()
    assert row(sub).status == Status.ACTIVE


def test_out_of_order_updated_before_created_with_stripe_reachable(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    created, *_, updated = [e for e in fake_stripe.take_events() if e["type"].startswith("customer.subscription")]
    deliver_event(updated)
    deliver_event(created)  # late: its copy says active, Stripe says canceling
    assert row(sub).status == Status.CANCELED


def test_out_of_order_from_the_events_own_copies_never_regresses(fake_stripe, monthly):
    """Stripe no longer has the subscription (404): each event's own copy counts, as of its `created`."""
    sub = subscribe(fake_stripe, monthly)
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    created, *_, updated = [e for e in fake_stripe.take_events() if e["type"].startswith("customer.subscription")]
    del fake_stripe.objects[sub["id"]]
    deliver_event(updated)
    late = deliver_event(created)
    assert late.event.status == WebhookEvent.Status.IGNORED and late.event.outcome.startswith("ignored: stale")
    r = row(sub)
    assert r.status == Status.CANCELED
    assert r.status_changes.filter(ignored=True, new_status=Status.ACTIVE).exists()


def test_without_a_user_the_subscription_is_an_orphan_until_the_customer_is_known(fake_stripe,
                                                                                    monthly):
    stranger = fake_stripe.customer_create({"email": "x@example.com"})
    sub = fake_stripe.start_subscription(stranger, monthly, payment_method="pm_card_visa")
    deliver_events(fake_stripe.take_events())
    assert row(sub).subscriber is None  # kept for support to link, never dropped

    known = SubscriberFactory(external_id="77")
    known.stripe_customer_id = stranger["id"]
    known.save()
    sub2 = fake_stripe.start_subscription(stranger, monthly, payment_method="pm_card_visa")
    deliver_events(fake_stripe.take_events())
    assert row(sub2).subscriber == known  # the customer's known subscriber


def test_checkout_session_links_the_user_by_client_reference_id(fake_stripe, monthly):
    session = fake_stripe.checkout_session_create({
        "mode": "subscription", "client_reference_id": "55", "line_items": [{"price": monthly["id"]}],
        "success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"})
    completed = fake_stripe.complete_checkout(session["id"])
    events = fake_stripe.take_events()
    # Only the session names the user here (no subscription_data.metadata): it still links.
    deliver_event(next(e for e in events if e["type"] == "checkout.session.completed"))
    r = Subscription.objects.get(provider_subscription_id=completed["subscription"])
    assert r.subscriber.external_id == "55" and r.status == Status.ACTIVE
    assert r.subscriber.stripe_customer_id == completed["customer"]
    deliver_events(events)  # the subscription's own events then find the user by the customer
    assert Subscription.objects.get(pk=r.pk).subscriber.external_id == "55"


def test_full_refund_of_the_current_period_revokes_until_a_new_payment(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    charge = fake_stripe.latest_charge(sub["id"])
    refund = fake_stripe.refund(charge["id"])
    [refunded] = fake_stripe.take_events()
    assert "refunds" not in refunded["data"]["object"]  # current API versions: the refunds are listed
    deliver_event(refunded)

    r = row(sub)
    assert r.status == Status.REVOKED
    assert check_answer("42")["is_subscribed"] is False
    t = Transaction.objects.get(provider_transaction_id=refund["id"])
    assert (t.kind, t.amount_minor, t.currency) == (TransactionKind.REFUND, 999, "USD")

    # Stripe still says active: an unrelated update does not give access back...
    fake_stripe.subscription_update({"metadata": {"note": "x"}}, sub["id"])
    deliver_events(fake_stripe.take_events())
    assert row(sub).status == Status.REVOKED
    # ...a new paid period does.
    fake_stripe.renew(sub["id"])
    deliver_events(fake_stripe.take_events())
    assert row(sub).status == Status.ACTIVE


def test_partial_refund_records_money_and_keeps_access(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    refund = fake_stripe.refund(fake_stripe.latest_charge(sub["id"])["id"], amount=300)
    deliver_events(fake_stripe.take_events())
    assert row(sub).status == Status.ACTIVE
    assert Transaction.objects.get(provider_transaction_id=refund["id"]).amount_minor == 300


def test_dispute_revokes_access_and_records_a_chargeback(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    dispute = fake_stripe.dispute(fake_stripe.latest_charge(sub["id"])["id"])
    deliver_events(fake_stripe.take_events())
    assert row(sub).status == Status.REVOKED
    t = Transaction.objects.get(provider_transaction_id=dispute["id"])
    assert (t.kind, t.amount_minor) == (TransactionKind.CHARGEBACK, 999)


def test_zero_decimal_currency_amounts_are_kept_as_given(fake_stripe):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium JP"), unit_amount=980, currency="jpy")
    sub = subscribe(fake_stripe, price, user_id="jp1")
    deliver_events(fake_stripe.take_events())
    r = row(sub)
    assert (r.amount_minor, r.currency) == (980, "JPY")  # ¥980, not ¥9.80
    t = Transaction.objects.get(subscription=r)
    assert (t.amount_minor, t.currency) == (980, "JPY")
    product = Product.objects.get(store_product_id=price["id"])
    assert (product.price_minor, product.currency) == (980, "JPY")


def test_stripe_unreachable_while_parsing_is_transient(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    created = fake_stripe.take_events()[1]
    assert created["type"] == "customer.subscription.created"
    fake_stripe.fail(r"GET /v1/subscriptions/", status=503)
    delivered = deliver_event(created)
    assert delivered.response.status_code == 200  # stored: the failure is ours to retry, not Stripe's
    assert delivered.event.status == WebhookEvent.Status.RECEIVED and delivered.event.next_attempt_at is not None
    assert delivered.event.error.startswith("StoreUnavailable: Stripe did not answer")
    assert not Subscription.objects.filter(provider_subscription_id=sub["id"]).exists()
    assert retry_now(delivered).status == WebhookEvent.Status.PROCESSED  # the retry succeeds
    assert row(sub).status == Status.ACTIVE


def test_a_key_stripe_refuses_keeps_the_event_retrying_until_the_key_is_fixed(fake_stripe, monthly, settings):
    sub = subscribe(fake_stripe, monthly)
    created = fake_stripe.take_events()[1]
    settings.STRIPE_SECRET_KEY = "sk_test_rotated"  # the old key, refused by Stripe with 401
    delivered = deliver_event(created)
    assert delivered.response.status_code == 200
    for _ in range(3):  # retried like an outage, not failed for good at the first 401
        event = retry_now(delivered)
        assert event.status == WebhookEvent.Status.RECEIVED and event.next_attempt_at is not None
        assert event.error.startswith("CredentialsRefused: Stripe refused the request")
    assert not Subscription.objects.filter(provider_subscription_id=sub["id"]).exists()

    settings.STRIPE_SECRET_KEY = SECRET_KEY  # the operator sets the new key
    assert retry_now(delivered).status == WebhookEvent.Status.PROCESSED
    assert row(sub).status == Status.ACTIVE and delivered.event.attempts == 5


def test_events_we_do_not_act_on_are_ignored(fake_stripe):
    fake_stripe.customer_create({"email": "a@example.com"})
    [created] = fake_stripe.take_events()
    delivered = deliver_event(created)
    assert delivered.event.status == WebhookEvent.Status.IGNORED and delivered.subscriptions == []
    assert delivered.event.outcome == "ignored: customer.created does not change subscription state"


def test_price_events_update_the_catalogue(fake_stripe):
    price = fake_stripe.add_price(fake_stripe.add_product("Gold"), unit_amount=4900, interval="year")
    fake_stripe.emit("price.created", price)
    deliver_events(fake_stripe.take_events())
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
def test_status_mapping_of_cases_stripe_has_no_status_for(fake_stripe, monthly,
                                                          django_capture_on_commit_callbacks,
                                                          start, change, status, entitled):
    sub = subscribe(fake_stripe, monthly, **start)
    deliver_events(fake_stripe.take_events())
    access_until = change(fake_stripe, sub)
    events = fake_stripe.take_events()
    assert events, "the change at Stripe sends an event"
    with django_capture_on_commit_callbacks(execute=True):
        deliver_events(events)

    r = row(sub)
    assert r.status == status
    assert r.expires_at == access_until
    assert r.auto_renew is False
    assert check_answer("42")["is_subscribed"] is entitled
    assert r.is_entitled(access_until - timedelta(seconds=1)) is entitled
    assert not r.is_entitled(access_until + timedelta(seconds=1))


# --- webhook-only set-up (no STRIPE_SECRET_KEY): events are applied from their own content -------

def test_without_the_api_key_a_paid_renewal_is_recorded_from_the_event(fake_stripe, monthly,
                                                                       settings):
    sub = subscribe(fake_stripe, monthly)
    created = fake_stripe.take_events()
    fake_stripe.renew(sub["id"])
    renewal_events = fake_stripe.take_events()
    settings.STRIPE_SECRET_KEY = ""  # webhook-only: Stripe cannot be asked anything
    requests_before = len(fake_stripe.requests)

    deliver_events(created)
    r = row(sub)
    assert r.status == Status.ACTIVE
    [purchase] = Transaction.objects.filter(subscription=r)
    assert (purchase.kind, purchase.amount_minor, purchase.currency) == (TransactionKind.PURCHASE, 999, "USD")

    paid = next(e for e in renewal_events if e["type"] == "invoice.paid")
    delivered = deliver_event(paid)  # alone: the subscription's own event is not needed
    renewal = Transaction.objects.get(provider_transaction_id=paid["data"]["object"]["id"])
    assert (renewal.kind, renewal.amount_minor, renewal.subscription_id) == (TransactionKind.RENEWAL, 999, r.pk)
    assert delivered.event.outcome == f"stripe:{sub['id']} unchanged: ACTIVE (+1 transactions)"
    assert row(sub).status == Status.ACTIVE
    assert len(fake_stripe.requests) == requests_before  # nothing was asked of Stripe

    deliver_event(paid)  # a redelivery records nothing more
    assert Transaction.objects.filter(subscription=r).count() == 2


def test_without_the_api_key_a_paid_invoice_before_its_subscription_is_retried(fake_stripe, monthly,
                                                                              settings):
    sub = subscribe(fake_stripe, monthly)
    events = fake_stripe.take_events()
    settings.STRIPE_SECRET_KEY = ""
    paid = deliver_event(next(e for e in events if e["type"] == "invoice.paid"))
    assert paid.event.status == WebhookEvent.Status.RECEIVED and "not known yet" in paid.event.error
    assert not Transaction.objects.exists()

    deliver_event(next(e for e in events if e["type"] == "customer.subscription.created"))
    assert retry_now(paid).status == WebhookEvent.Status.PROCESSED
    assert Transaction.objects.get().subscription == row(sub)


def test_without_the_api_key_a_paid_invoice_never_undoes_a_newer_state(fake_stripe, monthly,
                                                                       settings):
    """An invoice carries no subscription state: it keeps the stored one, as of when it was read. A
    cancellation applied between the parse and the apply (the same drain batch) stands, even though
    the invoice's event is the newer one."""
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, sub["id"])
    [canceling] = fake_stripe.take_events()
    fake_stripe.renew(sub["id"])  # a last period paid (the cancellation takes effect at its end)
    paid = next(e for e in fake_stripe.take_events() if e["type"] == "invoice.paid")
    assert paid["created"] > canceling["created"]
    settings.STRIPE_SECRET_KEY = ""

    # One drain batch: both parsed (the invoice reads the stored, still active state), then applied in order.
    deliver_event(canceling, process=False)
    late = deliver_event(paid, process=False)
    assert drain() == 2

    late.event.refresh_from_db()
    assert late.event.status == WebhookEvent.Status.IGNORED
    assert late.event.outcome == (f"ignored: stale; stripe:{sub['id']} stale: ACTIVE ignored, kept CANCELED "
                                  "(+1 transactions)")
    assert row(sub).status == Status.CANCELED
    assert Transaction.objects.filter(provider_transaction_id=paid["data"]["object"]["id"]).exists()


def test_without_the_api_key_a_full_refund_revokes_until_the_next_paid_period(fake_stripe, monthly,
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
    deliver_events(created)

    deliver_event(refunded)
    r = row(sub)
    assert r.status == Status.REVOKED and check_answer("42")["is_subscribed"] is False
    t = Transaction.objects.get(provider_transaction_id=refund["id"])
    assert (t.kind, t.amount_minor, t.subscription_id) == (TransactionKind.REFUND, 999, r.pk)

    deliver_events(renewal)  # the next period paid: its events' copies name a newer invoice
    assert row(sub).status == Status.ACTIVE


# --- the whole pipeline: what is stored, published and mirrored --------------------------------

def test_web_subscription_events_subscribe_the_user_and_publish(fake_stripe, django_capture_on_commit_callbacks):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium"), unit_amount=999)
    cus = fake_stripe.customer_create({"email": "a@example.com"})
    sub = fake_stripe.start_subscription(cus, price, payment_method="pm_card_visa", metadata={"user_id": "42"})
    with django_capture_on_commit_callbacks(execute=True):
        delivered = deliver_events(fake_stripe.take_events())
    assert all(d.response.status_code == 200 for d in delivered), [d.response.content for d in delivered]

    row = Subscription.objects.get(provider_subscription_id=sub["id"])
    assert row.status == Status.ACTIVE and row.subscriber.external_id == "42"
    assert Transaction.objects.filter(subscription=row).count() == 1  # invoice.paid + payment_succeeded: once
    assert check_answer("42")["is_subscribed"] is True
    assert WebhookEvent.objects.filter(provider="stripe", status=WebhookEvent.Status.PROCESSED).exists()
    assert WebhookEvent.objects.get(event_type="customer.subscription.created").store_ids[:2] == [
        sub["id"], cus["id"]]
    [outbox] = Outbox.objects.filter(subscription=row)
    published = stream_events()
    assert [(p["userId"], p["newStatus"], p["provider"]) for p in published] == [("42", "ACTIVE", "stripe")]
    assert published[0]["eventId"] == str(outbox.event_id)
    # dj-stripe's mirror ran in its own task, from the same events.
    assert MirroredSubscription.objects.filter(id=sub["id"]).exists()


def test_a_redelivered_event_is_answered_the_same_and_applied_once(fake_stripe, django_capture_on_commit_callbacks):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium"), unit_amount=999)
    fake_stripe.start_subscription(fake_stripe.customer_create({}), price, payment_method="pm_card_visa",
                                   metadata={"user_id": "42"})
    events = fake_stripe.take_events()
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            delivered = deliver_events(events)
        assert all(d.response.status_code == 200 for d in delivered), [d.response.content for d in delivered]
    assert WebhookEvent.objects.count() == len(events)
    assert Outbox.objects.count() == 1 and Transaction.objects.count() == 1


def old_shape(name: str) -> bytes:
    """A real body with its zeroed event id made unique (all the files share one id, which would
    rightly be deduplicated); the rest of the bytes are the file's."""
    return fixture_event(name).replace(b'"evt_000000000000000000000000"', f'"evt_{name}"'.encode(), 1)


def linked(name: str, **fields) -> bytes:
    """An old-shape body with an event id of its own, tied, test-side, to the subscription of
    customer.subscription.created.json: the files' zeroed ids are otherwise unrelated (SOURCES.md).
    Only the linking fields of `data.object` are set; the rest is the file's."""
    event = json.loads(fixture_event(name))
    event["id"] = f"evt_{name}_linked"
    event["data"]["object"].update(fields)
    return json.dumps(event).encode()


def test_real_old_shape_events_are_understood(fake_stripe, django_capture_on_commit_callbacks):
    """stripe-ruby-mock's real bodies (API 2020-08-27: top-level current_period_end, `invoice.subscription`,
    `charge.invoice`, refunds listed in the charge). Their ids are zeroed and unknown to Stripe (404):
    a subscription event's own copy is used, as of its `created`; the invoice, Checkout, refund and
    dispute events are applied to the subscription as we hold it."""
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_body(fixture_event("customer.subscription.created")).response.status_code == 200
    created = json.loads(fixture_event("customer.subscription.created"))["data"]["object"]
    row = Subscription.objects.get(provider_subscription_id=created["id"])
    assert row.status == Status.ACTIVE
    assert row.expires_at.timestamp() == created["current_period_end"]
    assert row.subscriber is None  # no metadata.user_id and an unknown customer: an orphan for support

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_body(old_shape("customer.subscription.deleted")).response.status_code == 200
    # The captured deleted event is 13 s OLDER than the created one (created 1648320097 < 1648320110):
    # applied late, it must not regress the state, and is kept as an ignored change for support.
    row.refresh_from_db()
    assert row.status == Status.ACTIVE
    assert row.status_changes.filter(ignored=True, new_status=Status.EXPIRED).exists()
    assert WebhookEvent.objects.get(dedupe_key="evt_customer.subscription.deleted").outcome.startswith(
        "ignored: stale")

    # Unlinked, as captured (a manual invoice, a one-off payment, a charge of no invoice): ignored.
    with django_capture_on_commit_callbacks(execute=True):
        for name in ("invoice.paid", "charge.refunded", "checkout.session.completed"):
            assert deliver_body(old_shape(name)).response.status_code == 200
    assert set(WebhookEvent.objects.filter(status=WebhookEvent.Status.IGNORED).values_list(
        "event_type", flat=True)) >= {"invoice.paid", "charge.refunded", "checkout.session.completed"}
    assert not Transaction.objects.exists()

    invoice_id, sub_id = created["latest_invoice"], created["id"]
    with django_capture_on_commit_callbacks(execute=True):
        # invoice.subscription (top level): the money of the subscription's first invoice.
        assert deliver_body(linked("invoice.paid", subscription=sub_id, billing_reason="subscription_create")
                            ).response.status_code == 200
        # client_reference_id: the orphan gets its user.
        assert deliver_body(linked("checkout.session.completed", mode="subscription", subscription=sub_id,
                                   client_reference_id="42")).response.status_code == 200
    paid = Transaction.objects.get(provider_transaction_id=invoice_id)
    assert (paid.subscription_id, paid.kind, paid.amount_minor, paid.currency) == (row.pk, "purchase", 2000, "USD")
    row.refresh_from_db()
    assert row.status == Status.ACTIVE and row.subscriber.external_id == "42"
    assert row.subscriber.stripe_customer_id == created["customer"]

    with django_capture_on_commit_callbacks(execute=True):
        # charge.invoice names the invoice; the refund is in the charge's own `refunds.data`.
        assert deliver_body(linked("charge.refunded", invoice=invoice_id)).response.status_code == 200
    row.refresh_from_db()
    assert row.status == Status.REVOKED  # the charge refunded in full, for the current period's invoice
    refund = Transaction.objects.get(provider_transaction_id="re_000000000000000000000000")
    assert (refund.subscription_id, refund.kind, refund.amount_minor) == (row.pk, "refund", 100)

    with django_capture_on_commit_callbacks(execute=True):
        # The disputed charge (ch_0…) is the one the old-shape invoice named.
        assert deliver_body(old_shape("charge.dispute.created")).response.status_code == 200
    chargeback = Transaction.objects.get(provider_transaction_id="dp_000000000000000000000000")
    assert (chargeback.subscription_id, chargeback.kind, chargeback.amount_minor) == (row.pk, "chargeback", 100)
    row.refresh_from_db()
    assert row.status == Status.REVOKED
    linked_events = WebhookEvent.objects.filter(dedupe_key__endswith="_linked") | WebhookEvent.objects.filter(
        event_type="charge.dispute.created")
    assert {e.status for e in linked_events} == {WebhookEvent.Status.PROCESSED}, [e.outcome for e in linked_events]


def test_a_failing_mirror_never_holds_back_the_unified_state(fake_stripe, django_capture_on_commit_callbacks):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium"), unit_amount=999)
    sub = fake_stripe.start_subscription(fake_stripe.customer_create({}), price, payment_method="pm_card_visa",
                                         metadata={"user_id": "42"})
    # dj-stripe's first call for a key refused (a permanent failure: logged, not retried).
    fake_stripe.fail(r"GET /v1/account", status=401, times=1000)
    with django_capture_on_commit_callbacks(execute=True):
        delivered = deliver_events(fake_stripe.take_events())
    assert all(d.response.status_code == 200 for d in delivered)
    assert not MirroredSubscription.objects.exists()
    assert Subscription.objects.get(provider_subscription_id=sub["id"]).status == Status.ACTIVE
    assert not WebhookEvent.objects.exclude(status__in=["processed", "ignored"]).exists()


@pytest.fixture
def queued_tasks():
    """This process publishes tasks to the broker, as a deployment does, instead of running them in-process."""
    previous = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False
    yield
    current_app.conf.task_always_eager = previous


def test_the_mirror_of_a_burst_is_one_task_on_the_slow_queue_that_mirrors_every_event(
        fake_stripe, monthly, queued_tasks, redis_client):
    sub = subscribe(fake_stripe, monthly)
    fake_stripe.renew(sub["id"])
    events = fake_stripe.take_events()
    delivered = deliver_events(events)
    assert all(d.event.status in ("processed", "ignored") for d in delivered), [d.event.outcome for d in delivered]
    assert row(sub).status == Status.ACTIVE  # the unified state never waits for the mirror

    # One task for the whole burst, on worker-slow's queue: nothing of the mirror for the webhooks worker.
    assert (redis_client.llen("slow"), redis_client.llen("actions")) == (1, 0)
    assert not MirroredSubscription.objects.exists()

    assert mirror_events() == len(events)  # what worker-slow runs
    assert MirroredSubscription.objects.filter(id=sub["id"]).exists()
    assert redis_client.llen(MIRROR_PENDING) == 0
    # The next event schedules a task of its own again.
    fake_stripe.renew(sub["id"])
    deliver_events(fake_stripe.take_events())
    assert redis_client.llen("slow") == 2


def subscription_reads(fake, sub) -> int:
    """The pipeline's re-reads of the subscription (dj-stripe's mirror reads it too, without expanding)."""
    return sum(1 for method, path, params in fake.requests if method == "GET"
               and path == f"/v1/subscriptions/{sub['id']}" and "items.data.price.product" in params.get("expand", []))


def test_events_of_one_subscription_drained_together_read_it_from_stripe_once(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    events = fake_stripe.take_events()
    named = [e for e in events if e["type"].startswith(("customer.subscription.", "invoice."))]
    assert len(named) >= 3  # customer.subscription.created, invoice.paid, invoice.payment_succeeded
    for event in events:
        deliver_event(event, process=False)  # stored together, as a burst waits for the worker
    drain()
    assert subscription_reads(fake_stripe, sub) == 1
    # invoice.paid and invoice.payment_succeeded: the charge that paid the invoice (fee and net) read once
    # too, in one call: the invoice's payment came with the subscription's read.
    charge = fake_stripe.latest_charge(sub["id"])
    assert [p.get("expand") for m, path, p in fake_stripe.requests
            if path == f"/v1/payment_intents/{charge['payment_intent']}"] == [["latest_charge.balance_transaction"]]
    assert not [path for _, path, _ in fake_stripe.requests if path.startswith(("/v1/charges", "/v1/invoice_payments"))]
    assert row(sub).status == Status.ACTIVE and Transaction.objects.count() == 1
    assert set(WebhookEvent.objects.filter(event_type__in=[e["type"] for e in named]).values_list(
        "status", flat=True)) == {"processed"}

    # A later group reads it again: what Stripe holds now.
    fake_stripe.set_status(sub["id"], "past_due")
    for event in fake_stripe.take_events():
        deliver_event(event, process=False)
    drain()
    assert subscription_reads(fake_stripe, sub) == 2
    assert row(sub).status == Status.ON_GRACE
