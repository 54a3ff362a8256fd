"""What the ledger keeps of Xsolla's money movements (docs/finance.md "The ledger"), through the real
pipeline with the payloads of Xsolla's own SDK tests: the transaction id, the user's country, the plan,
the coupon, and Xsolla's fees and payout where it states them in one currency."""

import pytest

from billing.models import Transaction
from tests.helpers import exported_transactions

from .conftest import body_of, fixture_bytes, fixture_json, send

pytestmark = pytest.mark.django_db


def test_a_payment_keeps_xsollas_ids_country_plan_coupon_and_payout(xsolla):
    send(fixture_bytes("sdk/payment"))
    tx = Transaction.objects.get(provider="xsolla")
    assert (tx.order_id, tx.country, tx.store_product_id, tx.offer_kind) == ("1", "US", "1", "offer_code")
    # payment_details: payout 200 USD after xsolla_fee 10 and the payment method's fee (both USD).
    details = fixture_json("sdk/payment")["payment_details"]
    fees = round((details["xsolla_fee"]["amount"] + details["payment_method_fee"]["amount"]) * 100)
    assert (tx.fee_minor, tx.net_minor, tx.settlement_currency) == (fees, 20000, "USD")


def test_fees_in_another_currency_than_the_payout_are_left_empty(xsolla):
    body = fixture_json("sdk/payment")
    body["payment_details"]["xsolla_fee"]["currency"] = "EUR"
    send(body_of(body))
    tx = Transaction.objects.get(provider="xsolla")
    assert (tx.fee_minor, tx.net_minor, tx.settlement_currency) == (None, None, "")


def test_a_refund_refers_to_the_payment(xsolla):
    send(fixture_bytes("sdk/payment"))
    send(fixture_bytes("sdk/refund"))
    refund = Transaction.objects.get(provider="xsolla", kind="refund")
    assert (refund.refers_to, refund.order_id, refund.fee_minor) == ("1", "1", None)
    assert [(r["kind"], r["store_transaction_id"], r["amount"], r["fee"], r["net"])
            for r in exported_transactions("xsolla")] == [("purchase", "1", "9.99", "30.00", "200.00"),
                                                           ("refund", "refund:1", "9.99", "", "")]
