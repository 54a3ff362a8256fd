"""Reads Google Play's code needs about what we already hold (no writes): known purchase tokens, who
bought a purchase (`purchase_buyer`, and `purchase_snapshot`: the mapped state with that user link),
refunded orders, and the purchases awaiting acknowledgement."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import Subscriber
from billing.models import Subscription, Transaction
from billing.snapshots import Provider, Snapshot, TransactionRecord
from billing.statuses import Status

from . import mapping


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


def purchase_buyer(purchase: dict, *, known: bool, ignore_unknown: bool = False) -> mapping.Who | None:
    """Who bought the purchase (docs/providers/google.md, "Who the user is"): a subscriber already
    carrying its obfuscated account id; else that id taken as the app's user id; else the owner of the
    token it replaces (linkedPurchaseToken); else, for a resubscribe from the Play subscription center,
    the owner of the expired token; else the link we already have, or an orphan for support to link.
    `known`: we hold the token already. `ignore_unknown` (GOOGLE_UNKNOWN_TOKEN_POLICY=ignore, for
    notifications): None for a token never seen here that nobody here claims (another deployment's)."""
    ignore_unknown = ignore_unknown and not known
    expired_token, expired_account = mapping.out_of_app_context(purchase)
    for account in (mapping.obfuscated_account_id(purchase), expired_account):
        if not account:
            continue
        found = subscriber_with_account_id(account)
        if found is not None and found.google_obfuscated_account_id == account:
            return mapping.Who(identity_value=account)  # apply_snapshot finds them by it
        if found is not None or not ignore_unknown:
            return mapping.Who(user_id=account, identity_value=account)
    for token in (purchase.get("linkedPurchaseToken"), expired_token):
        owner = owner_of_token(token)
        if owner:
            return mapping.Who(user_id=owner)
    if ignore_unknown:
        return None
    return mapping.Who()  # keep the link we have, or an orphan for support


def purchase_snapshot(token: str, purchase: dict, *, known_status: str | None, observed_at: datetime | None = None,
                      revoked: bool = False, event_time: datetime | None = None, ignore_unknown: bool = False,
                      extra_transactions: tuple[TransactionRecord, ...] = ()) -> Snapshot | None:
    """The snapshot of a purchase just read from Google (mapping.subscription_snapshot), with the user
    link decided (`purchase_buyer`). `known_status`: our status of the token, None if we do not hold
    it. None: an unseen token nobody claims, under `ignore_unknown`."""
    who = purchase_buyer(purchase, known=known_status is not None, ignore_unknown=ignore_unknown)
    if who is None:
        return None
    return mapping.subscription_snapshot(token, purchase, observed_at=observed_at or timezone.now(), who=who,
                                         revoked=revoked or known_status == Status.REVOKED, event_time=event_time,
                                         extra_transactions=tuple(extra_transactions))


def order_amount(order_id: str) -> tuple[int | None, str]:
    row = (Transaction.objects.filter(provider=Provider.GOOGLE, provider_transaction_id=order_id)
           .values_list("amount_minor", "currency").first())
    return row if row else (None, "")


@dataclass(frozen=True)
class Acknowledgement:
    """Where a purchase we hold stands with acknowledging: linked to a user yet, acknowledged yet."""

    linked: bool
    acknowledged: bool


def acknowledgement_state(token: str) -> Acknowledgement | None:
    row = (Subscription.objects.filter(provider=Provider.GOOGLE, provider_subscription_id=token)
           .values_list("subscriber_id", "acknowledged_at").first())
    return Acknowledgement(linked=row[0] is not None, acknowledged=row[1] is not None) if row else None


def subscriptions_awaiting_acknowledgement(*, due_within: timedelta | None = None, include_overdue_days: int = 1,
                                           linked_only: bool = False):
    """Google purchases we have not acknowledged yet, soonest deadline first (Google refunds them
    3 days after purchase). `due_within`: only those due that soon. Overdue ones are kept for a
    day so support sees what was lost. `linked_only`: only those with a user (what can be
    acknowledged: an orphan waits for support)."""
    now = timezone.now()
    qs = Subscription.objects.filter(provider=Provider.GOOGLE, acknowledged_at__isnull=True,
                                     acknowledgement_due_at__isnull=False,
                                     acknowledgement_due_at__gte=now - timedelta(days=include_overdue_days))
    if due_within is not None:
        qs = qs.filter(acknowledgement_due_at__lte=now + due_within)
    if linked_only:
        qs = qs.filter(subscriber__isnull=False)
    return qs.order_by("acknowledgement_due_at", "id")
