"""Reads of our own state that the Stripe adapter needs."""

from billing.models import Subscription, Transaction
from billing.snapshots import Provider
from billing.statuses import Status

# Kept in Subscription.raw_snapshot when a refund or dispute revoked access: the invoice it was for.
REVOKED_FOR_INVOICE = "revoked_for_invoice"


def revoked_for_invoice(subscription_id: str) -> str | None:
    """The invoice whose refund/dispute revoked this subscription, while it is still REVOKED."""
    row = (Subscription.objects.filter(provider=Provider.STRIPE, provider_subscription_id=subscription_id)
           .values("status", "raw_snapshot").first())
    if row is None or row["status"] != Status.REVOKED:
        return None
    return (row["raw_snapshot"] or {}).get(REVOKED_FOR_INVOICE)


def subscription_id_for_invoice(invoice_id: str) -> str | None:
    """The subscription an invoice we recorded as a payment belongs to."""
    return (Transaction.objects.filter(provider=Provider.STRIPE, provider_transaction_id=invoice_id)
            .values_list("subscription__provider_subscription_id", flat=True).first())
