"""End to end through POST /webhooks/stripe: the pipeline stores the event, processes it (Celery runs
eagerly, on commit) with the Stripe adapter against the fake, and publishes the change."""

import json
import time

import pytest
from django.conf import settings

from billing.models import Outbox, Subscription, Transaction
from billing.selectors import check_answer
from billing.statuses import Status
from tests.fakes.stripe import sign
from webhooks.models import WebhookEvent

from .conftest import WEBHOOK_SECRET, event_body, fixture_event, signed_headers

pytestmark = pytest.mark.django_db


def post(client, body: bytes, headers: dict | None = None):
    headers = signed_headers(body) if headers is None else headers
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "Content-Type"}
    return client.post("/webhooks/stripe", data=body, content_type="application/json", **extra)


def deliver_all(client, events, capture):
    with capture(execute=True):
        responses = [post(client, event_body(e)) for e in events]
    assert all(r.status_code == 200 for r in responses), [r.content for r in responses]
    return responses


def test_web_subscription_events_subscribe_the_user_and_publish(client, fake_stripe, redis_client,
                                                                 django_capture_on_commit_callbacks):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium"), unit_amount=999)
    cus = fake_stripe.customer_create({"email": "a@example.com"})
    sub = fake_stripe.start_subscription(cus, price, payment_method="pm_card_visa", metadata={"user_id": "42"})
    deliver_all(client, fake_stripe.take_events(), django_capture_on_commit_callbacks)

    row = Subscription.objects.get(provider_subscription_id=sub["id"])
    assert row.status == Status.ACTIVE and row.subscriber.external_id == "42"
    assert Transaction.objects.filter(subscription=row).count() == 1  # invoice.paid + payment_succeeded: once
    assert check_answer("42")["is_subscribed"] is True
    assert WebhookEvent.objects.filter(provider="stripe", status=WebhookEvent.Status.PROCESSED).exists()
    assert WebhookEvent.objects.get(event_type="customer.subscription.created").store_ids[:2] == [
        sub["id"], cus["id"]]
    [outbox] = Outbox.objects.filter(subscription=row)
    entries = redis_client.xrange(settings.BILLING_EVENTS_STREAM)
    published = [json.loads(fields.get(b"event") or fields["event"]) for _, fields in entries]
    assert [(p["userId"], p["newStatus"], p["provider"]) for p in published] == [("42", "ACTIVE", "stripe")]
    assert published[0]["eventId"] == str(outbox.event_id)
    # dj-stripe's mirror ran in its own task, from the same events.
    from djstripe.models import Subscription as MirroredSubscription

    assert MirroredSubscription.objects.filter(id=sub["id"]).exists()


def test_a_redelivered_event_is_answered_the_same_and_applied_once(client, fake_stripe,
                                                                    django_capture_on_commit_callbacks):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium"), unit_amount=999)
    fake_stripe.start_subscription(fake_stripe.customer_create({}), price, payment_method="pm_card_visa",
                                   metadata={"user_id": "42"})
    events = fake_stripe.take_events()
    deliver_all(client, events, django_capture_on_commit_callbacks)
    deliver_all(client, events, django_capture_on_commit_callbacks)
    assert WebhookEvent.objects.count() == len(events)
    assert Outbox.objects.count() == 1 and Transaction.objects.count() == 1


@pytest.mark.parametrize("case", ["bad_signature", "too_old", "altered", "missing", "wrong_secret", "not_json"])
def test_unauthentic_requests_are_400_and_nothing_is_stored(client, fake_stripe, case):
    body = fixture_event("customer.subscription.created")
    headers = signed_headers(body)
    if case == "bad_signature":
        headers["Stripe-Signature"] = headers["Stripe-Signature"][:-4] + "0000"
    elif case == "too_old":
        headers = signed_headers(body, timestamp=int(time.time()) - 301)  # tolerance: 300 s
    elif case == "altered":
        body = body.replace(b'"status": "active"', b'"status": "trialing"')
        assert body != fixture_event("customer.subscription.created")
    elif case == "missing":
        headers = {}
    elif case == "wrong_secret":
        headers = signed_headers(body, secret="whsec_someone_else")
    elif case == "not_json":
        body = b"{not json"
        headers = signed_headers(body)
    response = post(client, body, headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("bad_signature", "missing_signature", "malformed")
    assert not WebhookEvent.objects.exists() and not Subscription.objects.exists()


def test_a_rotated_secret_keeps_working_during_the_overlap(client, fake_stripe, settings,
                                                          django_capture_on_commit_callbacks):
    settings.STRIPE_WEBHOOK_SECRET = f"whsec_new_secret,{WEBHOOK_SECRET}"
    body = fixture_event("customer.created")
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, {"Stripe-Signature": sign(body, "whsec_new_secret")}).status_code == 200
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.IGNORED


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


def test_real_old_shape_events_are_understood(client, fake_stripe, django_capture_on_commit_callbacks):
    """stripe-ruby-mock's real bodies (API 2020-08-27: top-level current_period_end, `invoice.subscription`,
    `charge.invoice`, refunds listed in the charge). Their ids are zeroed and unknown to Stripe (404):
    a subscription event's own copy is used, as of its `created`; the invoice, Checkout, refund and
    dispute events are applied to the subscription as we hold it."""
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, fixture_event("customer.subscription.created")).status_code == 200
    created = json.loads(fixture_event("customer.subscription.created"))["data"]["object"]
    row = Subscription.objects.get(provider_subscription_id=created["id"])
    assert row.status == Status.ACTIVE
    assert row.expires_at.timestamp() == created["current_period_end"]
    assert row.subscriber is None  # no metadata.user_id and an unknown customer: an orphan for support

    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, old_shape("customer.subscription.deleted")).status_code == 200
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
            assert post(client, old_shape(name)).status_code == 200
    assert set(WebhookEvent.objects.filter(status=WebhookEvent.Status.IGNORED).values_list(
        "event_type", flat=True)) >= {"invoice.paid", "charge.refunded", "checkout.session.completed"}
    assert not Transaction.objects.exists()

    invoice_id, sub_id = created["latest_invoice"], created["id"]
    with django_capture_on_commit_callbacks(execute=True):
        # invoice.subscription (top level): the money of the subscription's first invoice.
        assert post(client, linked("invoice.paid", subscription=sub_id, billing_reason="subscription_create")
                    ).status_code == 200
        # client_reference_id: the orphan gets its user.
        assert post(client, linked("checkout.session.completed", mode="subscription", subscription=sub_id,
                                   client_reference_id="42")).status_code == 200
    paid = Transaction.objects.get(provider_transaction_id=invoice_id)
    assert (paid.subscription_id, paid.kind, paid.amount_minor, paid.currency) == (row.pk, "purchase", 2000, "USD")
    row.refresh_from_db()
    assert row.status == Status.ACTIVE and row.subscriber.external_id == "42"
    assert row.subscriber.stripe_customer_id == created["customer"]

    with django_capture_on_commit_callbacks(execute=True):
        # charge.invoice names the invoice; the refund is in the charge's own `refunds.data`.
        assert post(client, linked("charge.refunded", invoice=invoice_id)).status_code == 200
    row.refresh_from_db()
    assert row.status == Status.REVOKED  # the charge refunded in full, for the current period's invoice
    refund = Transaction.objects.get(provider_transaction_id="re_000000000000000000000000")
    assert (refund.subscription_id, refund.kind, refund.amount_minor) == (row.pk, "refund", 100)

    with django_capture_on_commit_callbacks(execute=True):
        # The disputed charge (ch_0…) is the one the old-shape invoice named.
        assert post(client, old_shape("charge.dispute.created")).status_code == 200
    chargeback = Transaction.objects.get(provider_transaction_id="dp_000000000000000000000000")
    assert (chargeback.subscription_id, chargeback.kind, chargeback.amount_minor) == (row.pk, "chargeback", 100)
    row.refresh_from_db()
    assert row.status == Status.REVOKED
    linked_events = WebhookEvent.objects.filter(dedupe_key__endswith="_linked") | WebhookEvent.objects.filter(
        event_type="charge.dispute.created")
    assert {e.status for e in linked_events} == {WebhookEvent.Status.PROCESSED}, [e.outcome for e in linked_events]


def test_a_failing_mirror_never_holds_back_the_unified_state(client, fake_stripe, django_capture_on_commit_callbacks):
    price = fake_stripe.add_price(fake_stripe.add_product("Premium"), unit_amount=999)
    sub = fake_stripe.start_subscription(fake_stripe.customer_create({}), price, payment_method="pm_card_visa",
                                         metadata={"user_id": "42"})
    # dj-stripe's first call for a key refused (a permanent failure: logged, not retried).
    fake_stripe.fail(r"GET /v1/account", status=401, times=1000)
    deliver_all(client, fake_stripe.take_events(), django_capture_on_commit_callbacks)
    from djstripe.models import Subscription as MirroredSubscription

    assert not MirroredSubscription.objects.exists()
    assert Subscription.objects.get(provider_subscription_id=sub["id"]).status == Status.ACTIVE
    assert not WebhookEvent.objects.exclude(status__in=["processed", "ignored"]).exists()
