"""Reads the Google adapter needs about what we already hold (no writes)."""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from accounts.models import Subscriber
from billing.models import Subscription, Transaction
from billing.snapshots import Provider


@dataclass(frozen=True)
class Known:
    status: str
    subscriber_external_id: str | None


def known_token(token: str) -> Known | None:
    row = (Subscription.objects.filter(provider=Provider.GOOGLE, provider_subscription_id=token)
           .values_list("status", "subscriber__external_id").first())
    return Known(*row) if row else None


def owner_of_token(token: str) -> str | None:
    """The external id of the subscriber a purchase token belongs to, if any."""
    if not token:
        return None
    known = known_token(token)
    return known.subscriber_external_id if known else None


def subscriber_with_account_id(account_id: str) -> Subscriber | None:
    """The subscriber that already carries this obfuscated account id, or whose own id it is."""
    if not account_id:
        return None
    return (Subscriber.objects.filter(google_obfuscated_account_id=account_id).first()
            or Subscriber.objects.filter(external_id=account_id).first())


def order_amount(order_id: str) -> tuple[int | None, str]:
    row = (Transaction.objects.filter(provider=Provider.GOOGLE, provider_transaction_id=order_id)
           .values_list("amount_minor", "currency").first())
    return row if row else (None, "")


def subscriptions_awaiting_acknowledgement(*, due_within: timedelta | None = None, include_overdue_days: int = 1):
    """Google purchases we have not acknowledged yet, soonest deadline first (Google refunds them
    3 days after purchase). `due_within`: only those due that soon. Overdue ones are kept for a
    day so support sees what was lost."""
    now = timezone.now()
    qs = Subscription.objects.filter(provider=Provider.GOOGLE, acknowledged_at__isnull=True,
                                     acknowledgement_due_at__isnull=False,
                                     acknowledgement_due_at__gte=now - timedelta(days=include_overdue_days))
    if due_within is not None:
        qs = qs.filter(acknowledgement_due_at__lte=now + due_within)
    return qs.order_by("acknowledgement_due_at", "id")
