"""What the ledger keeps of Stripe's money movements (docs/finance.md "The ledger"), through the real
pipeline against the Stripe fake: invoice and charge ids, the period paid for, Stripe's fee and net from
the balance transaction, refunds and disputes referring to the invoice they take money back from."""

from datetime import UTC, datetime

import pytest

from billing.models import Transaction
from tests.helpers import drain, exported_transactions

from .conftest import deliver_events

pytestmark = pytest.mark.django_db


def redelivered(events: list[dict], event_type: str) -> list[dict]:
    """Stripe sends the same object again under a new event (a retry of another endpoint, a resend)."""
    return [{**e, "id": f"{e['id']}_again"} for e in events if e["type"] == event_type]


def subscribe(fake, price, user_id="42"):
    customer = fake.customer_create({"email": f"u{user_id}@example.com", "metadata": {"user_id": user_id}})
    return fake.start_subscription(customer, price, payment_method="pm_card_visa", metadata={"user_id": user_id})


def test_a_paid_invoice_delivered_twice_is_one_purchase_with_stripes_ids_period_and_fee(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    events = fake_stripe.take_events()
    deliver_events(events)
    assert [d.event.status for d in deliver_events(redelivered(events, "invoice.paid"))] == ["processed"]

    [purchase] = Transaction.objects.filter(provider="stripe")
    invoice = fake_stripe.objects[sub["latest_invoice"]]
    charge = fake_stripe.latest_charge(sub["id"])
    line_period = invoice["lines"]["data"][0]["period"]
    assert (purchase.kind, purchase.amount_minor, purchase.currency) == ("purchase", 999, "USD")
    assert (purchase.order_id, purchase.charge_id) == (invoice["id"], charge["id"])
    assert purchase.period_start == datetime.fromtimestamp(line_period["start"], tz=UTC)
    assert purchase.period_end == datetime.fromtimestamp(line_period["end"], tz=UTC)
    # The fake charges Stripe's published US card price: 2.9 % + 30 cents.
    assert (purchase.fee_minor, purchase.net_minor, purchase.settlement_currency) == (59, 940, "USD")


def test_a_redelivered_invoice_is_not_read_from_stripe_again(fake_stripe, monthly):
    subscribe(fake_stripe, monthly)
    events = fake_stripe.take_events()
    deliver_events(events)
    fake_stripe.requests.clear()
    deliver_events(redelivered(events, "invoice.paid"))
    assert fake_stripe.requests  # the subscription itself is re-read, as for every event
    assert not [path for _, path, _ in fake_stripe.requests
                if path.startswith(("/v1/charges", "/v1/invoice_payments", "/v1/payment_intents"))]


def test_the_fee_is_the_same_whether_the_invoice_is_the_latest_or_an_older_one(fake_stripe, monthly):
    """The latest invoice's payment comes with the subscription's read (one call for the charge); an older
    invoice's is listed (two calls): the same fee and net either way."""
    sub = subscribe(fake_stripe, monthly)
    first_invoice = fake_stripe.objects[sub["id"]]["latest_invoice"]
    fake_stripe.renew(sub["id"])
    renewal_invoice = fake_stripe.objects[sub["id"]]["latest_invoice"]
    deliver_events(fake_stripe.take_events())  # read after the renewal: the first invoice is not the latest

    paid = {t.order_id: t for t in Transaction.objects.filter(provider="stripe")}
    assert (paid[first_invoice].kind, paid[renewal_invoice].kind) == ("purchase", "renewal")
    for invoice_id in (first_invoice, renewal_invoice):
        charge = next(c for c in fake_stripe.objects.values()
                      if c.get("object") == "charge" and c["payment_intent"] in _intents_of(fake_stripe, invoice_id))
        assert paid[invoice_id].charge_id == charge["id"]
        assert (paid[invoice_id].fee_minor, paid[invoice_id].net_minor) == (59, 940)
    read = [path for _, path, _ in fake_stripe.requests]
    assert read.count("/v1/invoice_payments") == 1  # only the older invoice's payment is listed


def _intents_of(fake, invoice_id: str) -> set[str]:
    return {p["payment"]["payment_intent"] for p in fake.objects.values()
            if p.get("object") == "invoice_payment" and p["invoice"] == invoice_id}


def test_refund_and_dispute_refer_to_the_invoice_and_carry_stripes_fees(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    invoice_id = sub["latest_invoice"]
    charge = fake_stripe.latest_charge(sub["id"])
    refund = fake_stripe.refund(charge["id"], amount=300)
    dispute = fake_stripe.dispute(charge["id"])
    deliver_events(fake_stripe.take_events())

    refunded = Transaction.objects.get(provider_transaction_id=refund["id"])
    assert (refunded.kind, refunded.amount_minor, refunded.refers_to, refunded.charge_id) == (
        "refund", 300, invoice_id, charge["id"])
    assert (refunded.fee_minor, refunded.net_minor) == (0, -300)  # Stripe keeps its fee on a refund
    chargeback = Transaction.objects.get(provider_transaction_id=dispute["id"])
    assert (chargeback.kind, chargeback.amount_minor, chargeback.refers_to) == ("chargeback", 999, invoice_id)
    assert (chargeback.fee_minor, chargeback.net_minor) == (1500, -2499)  # the dispute fee on top
    # Finance's export: each money movement once, fees and nets as decimals of the settlement currency.
    rows = [(r["kind"], r["store_transaction_id"], r["order_id"], r["amount"], r["fee"], r["net"])
            for r in exported_transactions("stripe")]
    assert sorted(rows) == sorted([("purchase", invoice_id, invoice_id, "9.99", "0.59", "9.40"),
                                   ("refund", refund["id"], invoice_id, "3.00", "0.00", "-3.00"),
                                   ("chargeback", dispute["id"], invoice_id, "9.99", "15.00", "-24.99")])


def test_a_dispute_won_is_a_reversal_once(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    dispute = fake_stripe.dispute(fake_stripe.latest_charge(sub["id"])["id"])
    deliver_events(fake_stripe.take_events())
    fake_stripe.close_dispute(dispute["id"], won=True)
    closed = fake_stripe.take_events()
    deliver_events(closed)
    deliver_events(redelivered(closed, "charge.dispute.closed"))
    drain()

    [reversal] = Transaction.objects.filter(kind="refund_reversed")
    assert (reversal.amount_minor, reversal.refers_to, reversal.net_minor) == (999, sub["latest_invoice"], 999)
    assert reversal.subscription.provider_subscription_id == sub["id"]


def test_a_dispute_lost_moves_no_more_money(fake_stripe, monthly):
    sub = subscribe(fake_stripe, monthly)
    deliver_events(fake_stripe.take_events())
    dispute = fake_stripe.dispute(fake_stripe.latest_charge(sub["id"])["id"])
    deliver_events(fake_stripe.take_events())
    fake_stripe.close_dispute(dispute["id"], won=False)
    deliver_events(fake_stripe.take_events())
    assert list(Transaction.objects.order_by("occurred_at", "id").values_list("kind", flat=True)) == [
        "purchase", "chargeback"]
