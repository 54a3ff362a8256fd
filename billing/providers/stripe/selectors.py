"""Every read of our own state (the ORM) that the Stripe package needs; no writes."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Q

from accounts.models import Subscriber
from billing.models import Product, Subscription, Transaction
from billing.snapshots import Provider, TransactionKind
from billing.statuses import Status

# Kept in Subscription.raw_snapshot when a refund or dispute revoked access: the invoice it was for.
REVOKED_FOR_INVOICE = "revoked_for_invoice"


@dataclass(frozen=True)
class Stored:
    """A Stripe subscription as we hold it: what an event without a subscription copy of its own is
    applied to when Stripe's copy cannot be read."""

    subscription_id: str
    status: str
    last_event_at: datetime | None
    environment: str
    raw: dict

    @property
    def latest_invoice(self) -> str | None:
        latest = ((self.raw or {}).get("subscription") or {}).get("latest_invoice")
        return latest.get("id") if isinstance(latest, dict) else latest or None


def stored_subscription(subscription_id: str) -> Stored | None:
    row = (Subscription.objects.filter(provider=Provider.STRIPE, provider_subscription_id=subscription_id)
           .values("status", "last_event_at", "environment", "raw_snapshot").first())
    if row is None:
        return None
    return Stored(subscription_id=subscription_id, status=row["status"], last_event_at=row["last_event_at"],
                  environment=row["environment"], raw=row["raw_snapshot"] or {})


def revoked_for_invoice(subscription_id: str) -> str | None:
    """The invoice whose refund/dispute revoked this subscription, while it is still REVOKED."""
    # Only the one key, only of a REVOKED row: not the whole raw snapshot (kilobytes) on every event.
    return (Subscription.objects.filter(provider=Provider.STRIPE, provider_subscription_id=subscription_id,
                                        status=Status.REVOKED)
            .values_list(f"raw_snapshot__{REVOKED_FOR_INVOICE}", flat=True).first())


def subscription_id_for_invoice(invoice_id: str) -> str | None:
    """The subscription an invoice we recorded as a payment belongs to."""
    return (Transaction.objects.filter(provider=Provider.STRIPE, provider_transaction_id=invoice_id)
            .values_list("subscription__provider_subscription_id", flat=True).first())


def invoice_recorded(invoice_id: str) -> bool:
    return Transaction.objects.filter(provider=Provider.STRIPE, provider_transaction_id=invoice_id).exists()


def invoice_for_charge(charge_id: str, payment_intent_id: str | None = None) -> str | None:
    """The paid invoice we recorded for a charge: the charge the ledger found for it (its `charge_id`),
    or one an invoice of an API version before 2025-03-31 named."""
    match = Q(charge_id=charge_id) | Q(raw__charge=charge_id)
    if payment_intent_id:
        match |= Q(raw__payment_intent=payment_intent_id)
    return (Transaction.objects.filter(match, provider=Provider.STRIPE,
                                       kind__in=(TransactionKind.PURCHASE, TransactionKind.RENEWAL))
            .values_list("provider_transaction_id", flat=True).first())


def customer_id_for_user(external_id: str) -> str | None:
    """The Stripe customer we recorded for a user (None before their first setup intent or subscription)."""
    return (Subscriber.objects.filter(external_id=external_id, stripe_customer_id__isnull=False)
            .values_list("stripe_customer_id", flat=True).first())


def price_is_offered(price_id: str) -> bool:
    """Can this price be bought through the web API? Offered = a catalogue product staff marked offered,
    or a price id listed in STRIPE_OFFERED_PRICES. A price synced from Stripe is neither until then."""
    if price_id in settings.STRIPE_OFFERED_PRICES:
        return True
    return Product.objects.filter(provider=Provider.STRIPE, store_product_id=price_id, offered=True).exists()
