"""Every database read the Xsolla package needs (no writes: subscription state is written by
billing.apply only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from accounts.models import Subscriber
from billing.models import Subscription, Transaction
from billing.providers.common import as_dict
from billing.snapshots import Provider, TransactionKind

from .mapping import id_str


@dataclass(frozen=True)
class Stored:
    """What we already hold for a subscription: notifications carry no status, no environment and
    sometimes no dates, so these fill the gaps (mapping.py reads them)."""

    status: str
    expires_at: datetime | None
    environment: str
    last_event_at: datetime | None = None


def subscriber_exists(user_id: str) -> bool:
    """user_validation: the user is known by their app user id or their Xsolla identity."""
    if not user_id:
        return False
    return Subscriber.objects.filter(Q(external_id=user_id) | Q(xsolla_user_id=user_id)).exists()


def subscription_stored(subscription_id: str) -> Stored | None:
    """What we hold for Xsolla's subscription `subscription_id`, or None when it is new to us."""
    sub = Subscription.objects.filter(provider=Provider.XSOLLA, provider_subscription_id=subscription_id).first()
    return stored_of(sub) if sub is not None else None


def stored_of(subscription: Subscription) -> Stored:
    return Stored(status=subscription.status, expires_at=subscription.expires_at,
                  environment=subscription.environment, last_event_at=subscription.last_event_at)


def subscription_charged_before(subscription_id: str, *, transaction_id: str) -> bool:
    """Whether the subscription was charged by another transaction than this one (then a payment is a
    renewal)."""
    return Transaction.objects.filter(
        provider=Provider.XSOLLA, subscription__provider_subscription_id=subscription_id,
        kind__in=(TransactionKind.PURCHASE, TransactionKind.RENEWAL)).exclude(
        provider_transaction_id=transaction_id).exists()


def transaction_subscription_id(transaction_id: str) -> str | None:
    """A refund (or anti-fraud rejection) without `purchase.subscription`: the subscription whose
    payment we recorded under that transaction id, if any."""
    return (Transaction.objects.filter(provider=Provider.XSOLLA, provider_transaction_id=transaction_id)
            .values_list("subscription__provider_subscription_id", flat=True).first())


def subscription_user_id(subscription: Subscription) -> str:
    """The user id Xsolla knows the subscriber by: the stored identity, the state Xsolla last sent, or
    (Xsolla's user.id is the app's user id) the external id."""
    subscriber = subscription.subscriber
    if subscriber is not None and subscriber.xsolla_user_id:
        return subscriber.xsolla_user_id
    raw = subscription.raw_snapshot or {}
    raw_user = as_dict(raw.get("user")) or as_dict(as_dict(raw.get("subscription")).get("user"))
    if raw_user.get("id"):
        return id_str(raw_user["id"])
    return subscriber.external_id if subscriber is not None else ""
