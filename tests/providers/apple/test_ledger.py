"""What the ledger keeps of Apple's money movements (docs/finance.md "The ledger"), through the real
pipeline: each payment once, with Apple's ids, the period it pays for, the storefront and the offer."""

from datetime import UTC, datetime

import pytest

from billing.models import Transaction
from tests.fakes.apple import notification_claims, now_ms, renewal_claims, signed_body, transaction_claims
from tests.helpers import deliver, exported_transactions

pytestmark = pytest.mark.django_db

OTID = "2000000000000001"
DAY = 86_400_000


@pytest.fixture
def send(apple_settings, apple_chain):
    def send(kind, subtype=None, *, txn, status=1):
        claims = notification_claims(kind, subtype, chain=apple_chain, transaction=txn, renewal=renewal_claims(txn),
                                     status=status)
        delivered = deliver("apple", signed_body(apple_chain, claims))
        assert delivered.response.status_code == 200, delivered.response.content
    return send


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def test_purchase_and_renewal_delivered_twice_are_each_recorded_once_with_apples_details(send):
    bought = now_ms() - 40 * DAY
    first = transaction_claims(original_transaction_id=OTID, purchase_ms=bought, expires_ms=bought + 30 * DAY,
                               offerType=1, offerDiscountType="FREE_TRIAL", price=0)
    renewed = transaction_claims(original_transaction_id=OTID, transaction_id="2000000000000002", reason="RENEWAL",
                                 purchase_ms=bought + 30 * DAY, expires_ms=bought + 60 * DAY, price=9990,
                                 webOrderLineItemId="2000000000000099", storefront="DEU", currency="EUR")
    for _ in range(2):
        send("SUBSCRIBED", "INITIAL_BUY", txn=first)
        send("DID_RENEW", None, txn=renewed)

    purchase, renewal = Transaction.objects.filter(provider="apple").order_by("occurred_at")
    assert (purchase.kind, purchase.amount_minor, purchase.offer_kind) == ("purchase", 0, "free_trial")
    assert (renewal.kind, renewal.amount_minor, renewal.currency) == ("renewal", 999, "EUR")
    assert (renewal.order_id, renewal.line_item_id) == ("2000000000000002", "2000000000000099")
    assert (renewal.period_start, renewal.period_end) == (at(bought + 30 * DAY), at(bought + 60 * DAY))
    assert (renewal.country, renewal.offer_kind, renewal.store_product_id) == ("DEU", "", "com.example.premium.monthly")
    assert renewal.recorded_at >= renewal.occurred_at
    # Apple tells neither its commission nor taxes in notifications: left empty, not guessed.
    assert (renewal.fee_minor, renewal.net_minor, renewal.settlement_currency) == (None, None, "")
    # Finance's export: each once, with Apple's ids and the amounts in the currency's decimals.
    rows = [(r["kind"], r["store_transaction_id"], r["line_item_id"], r["amount"], r["amount_minor"], r["currency"])
            for r in exported_transactions("apple")]
    assert rows == [("purchase", OTID, str(int(OTID) + 7), "0.00", "0", "USD"),
                    ("renewal", "2000000000000002", "2000000000000099", "9.99", "999", "EUR")]


@pytest.mark.parametrize(("offer_type", "kind"), [(1, "introductory"), (2, "promotional"), (3, "offer_code")])
def test_the_offer_apple_names_is_kept(send, offer_type, kind):
    send("SUBSCRIBED", "INITIAL_BUY", txn=transaction_claims(original_transaction_id=OTID, offerType=offer_type,
                                                             offerDiscountType="PAY_AS_YOU_GO"))
    assert Transaction.objects.get().offer_kind == kind


def test_refund_then_its_reversal_refer_to_the_payment_and_the_reversal_gives_back_what_was_refunded(send):
    txn = transaction_claims(original_transaction_id=OTID, price=9990)
    send("SUBSCRIBED", "INITIAL_BUY", txn=txn)
    refunded = {**txn, "revocationDate": now_ms() - 1000, "revocationReason": 1, "revocationType": "REFUND_PRORATED",
                "revocationPercentage": 50000}
    send("REFUND", None, txn=refunded, status=5)
    send("REFUND_REVERSED", None, txn=txn)

    refund = Transaction.objects.get(kind="refund")
    reversal = Transaction.objects.get(kind="refund_reversed")
    assert (refund.refers_to, refund.amount_minor) == (OTID, 500)
    assert (reversal.refers_to, reversal.amount_minor, reversal.currency) == (OTID, 500, "USD")
    assert reversal.provider_transaction_id == f"{OTID}:refund_reversed"
    assert [(r["kind"], r["refers_to"], r["amount"]) for r in exported_transactions("apple")] == [
        ("purchase", "", "9.99"), ("refund", OTID, "5.00"), ("refund_reversed", OTID, "5.00")]
