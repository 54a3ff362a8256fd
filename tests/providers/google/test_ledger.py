"""What the ledger keeps of Google Play's money movements (docs/finance.md "The ledger"), through the
real pipeline with Google's captured purchases: each order once, with its order id, the period it pays
for as far as Google says it, the region, the offer; refunds and chargebacks from voided purchases."""

import pytest

from billing.models import Transaction
from billing.providers.common import datetime_from_iso
from tests.helpers import exported_transactions

from .conftest import PACKAGE, load_sequence, push, token_of

pytestmark = pytest.mark.django_db


def test_purchase_and_renewals_each_once_with_order_ids_region_and_period(google):
    steps = load_sequence("03_renew_x2_cancel_expire_resubscribe_grace_hold_expire.json")
    for step in steps[:3]:
        google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
        push(google, step["developerNotification"])
        push(google, step["developerNotification"] | {"eventTimeMillis": str(int(
            step["developerNotification"]["eventTimeMillis"]) + 1)})  # a redelivery
    first = steps[0]["subscriptionPurchaseV2"]
    purchase = Transaction.objects.get(provider_transaction_id="GPA.3309-4032-8192-54127")
    assert (purchase.kind, purchase.order_id, purchase.country) == ("purchase", "GPA.3309-4032-8192-54127", "AU")
    assert (purchase.store_product_id, purchase.amount_minor, purchase.currency) == ("session_pro", 1699, "AUD")
    assert purchase.period_start == datetime_from_iso(first["startTime"])
    assert purchase.period_end == datetime_from_iso(first["lineItems"][0]["expiryTime"])
    renewals = Transaction.objects.filter(provider="google", kind="renewal")
    assert renewals.count() == len({t.order_id for t in renewals}) >= 1
    for renewal in renewals:
        assert renewal.order_id == renewal.provider_transaction_id and renewal.period_end is not None
        assert renewal.period_start is None  # Google does not say when a renewal's period began: not guessed
    # Google tells neither its service fee nor taxes in the purchase: left empty.
    assert not Transaction.objects.filter(fee_minor__isnull=False).exists()
    rows = exported_transactions("google")
    assert sorted(r["store_transaction_id"] for r in rows) == sorted(
        Transaction.objects.filter(provider="google").values_list("provider_transaction_id", flat=True))
    assert {(r["kind"], r["amount"], r["currency"], r["country"], r["fee"]) for r in rows} == {
        ("purchase", "16.99", "AUD", "AU", ""), ("renewal", "16.99", "AUD", "AU", "")}


def test_a_free_trial_order_is_marked_as_such(google):
    steps = load_sequence("03_renew_x2_cancel_expire_resubscribe_grace_hold_expire.json")
    data = steps[0]["subscriptionPurchaseV2"]
    data["lineItems"][0]["offerPhase"] = {"freeTrial": {}}
    google.set_purchase(token_of(steps[0]), data)
    push(google, steps[0]["developerNotification"])
    assert Transaction.objects.get().offer_kind == "free_trial"


@pytest.mark.parametrize(("reason", "kind"), [(1, "refund"), (7, "chargeback")])
def test_voided_order_is_a_refund_or_a_chargeback_referring_to_the_order(google, reason, kind):
    steps = load_sequence("01_purchase_cancel_uncancel_refund.json", user_id="42")
    token = token_of(steps[0])
    google.set_purchase(token, steps[0]["subscriptionPurchaseV2"])
    push(google, steps[0]["developerNotification"])
    order = steps[0]["subscriptionPurchaseV2"]["latestOrderId"]
    google.set_purchase(token, steps[3]["subscriptionPurchaseV2"])
    google.void(token, order, reason=reason)
    push(google, {"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1759723392088",
                  "voidedPurchaseNotification": {"purchaseToken": token, "orderId": order, "productType": 1,
                                                 "refundType": 1}})
    voided = Transaction.objects.get(provider_transaction_id=f"refund:{order}")
    assert (voided.kind, voided.refers_to, voided.order_id) == (kind, order, order)
    assert voided.amount_minor == Transaction.objects.get(provider_transaction_id=order).amount_minor
