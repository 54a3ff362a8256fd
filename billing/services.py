"""Writes of subscription state. `apply_snapshot` is the ONE write path: webhooks, verification,
re-polls, staff fixes and beat jobs all come through it."""

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Subscriber
from accounts.selectors import subscriber_by_identity
from accounts.services import subscriber_get_or_create, subscriber_set_identity

from . import after_commit, outbox
from .models import Outbox, Product, StatusChange, Subscription, Transaction
from .snapshots import Cause, CauseKind, Snapshot
from .statuses import Status

logger = logging.getLogger(__name__)

# Causes that mean the store itself just told us this state.
_STORE_CONFIRMED = {CauseKind.WEBHOOK, CauseKind.POLL, CauseKind.VERIFICATION, CauseKind.BACKFILL}

# Snapshot fields copied onto the subscription when given (None keeps what is stored).
_OPTIONAL_FIELDS = (
    "period_unit", "period_value", "amount_minor", "upcoming_amount_minor", "currency", "auto_renew",
    "started_at", "current_period_start", "current_period_end", "expires_at", "grace_until",
    "canceled_at", "ended_at", "acknowledgement_due_at",
)


@dataclass(frozen=True)
class ApplyResult:
    subscription_id: int
    outcome: str  # "created", "updated", "unchanged" or "stale"
    old_status: str
    new_status: str
    transactions_added: int = 0

    @property
    def status_changed(self) -> bool:
        return self.outcome in ("created", "updated") and self.old_status != self.new_status


def apply_snapshot(snapshot: Snapshot, cause: Cause) -> ApplyResult:
    """Apply a store's state to our subscription, in one transaction with the row locked.

    - a snapshot older than `last_event_at` changes nothing but is recorded as ignored (no regression);
    - transactions are recorded once per provider id, stale or not (money facts do not regress);
    - a status change writes a StatusChange and an Outbox row; after commit the outbox is relayed to
      the stream and the subscriber's cached entitlements are refreshed.
    """
    now = timezone.now()
    with transaction.atomic():
        sub, created = _lock_or_create(snapshot)
        old_status = sub.status
        old_subscriber_id = sub.subscriber_id
        added = _record_transactions(sub, snapshot)

        if sub.last_event_at is not None and snapshot.observed_at < sub.last_event_at:
            StatusChange.objects.create(
                subscription=sub, old_status=old_status, new_status=snapshot.status,
                occurred_at=snapshot.observed_at, cause=cause.kind, cause_ref=cause.ref,
                staff_user_id=cause.staff_user_id, ignored=True,
                note=_join(f"stale: store time {snapshot.observed_at.isoformat()} is older than the "
                           f"state applied ({sub.last_event_at.isoformat()})", cause.note))
            if added:
                _after_commit(sub.subscriber_id)
            return ApplyResult(sub.pk, "stale", old_status, old_status, added)

        sub.status = snapshot.status
        for name in _OPTIONAL_FIELDS:
            value = getattr(snapshot, name)
            if value is not None:
                setattr(sub, name, value)
        if snapshot.status != Status.ON_GRACE and snapshot.grace_until is None and not snapshot.derived:
            sub.grace_until = None  # the store says grace is over: an old grace end must not extend access
        if snapshot.acknowledged:
            sub.acknowledged_at = sub.acknowledged_at or now
        if snapshot.store_product_id:
            sub.store_product_id = snapshot.store_product_id
            sub.product = _product_for(snapshot)
        sub.environment = snapshot.environment
        if not snapshot.derived:
            sub.last_event_at = snapshot.observed_at
        if cause.kind in _STORE_CONFIRMED:
            sub.last_verified_at = now
        if snapshot.raw:
            sub.raw_snapshot = snapshot.raw
        note = cause.note
        claim_note = ""
        subscriber = _resolve_subscriber(sub, snapshot)
        if subscriber is not None and sub.subscriber_id not in (None, subscriber.pk):
            # Ownership moves only through staff (subscription_link_subscriber); the claim stays visible.
            claim_note = f"store claims user {subscriber.external_id}; kept the linked user"
            logger.warning("%s: store claims user %s, linked to subscriber id %s", sub, subscriber.external_id,
                           sub.subscriber_id)
        elif subscriber is not None:
            sub.subscriber = subscriber
        sub.save()
        if snapshot.replaces:
            _supersede(sub, snapshot)

        changed = old_status != sub.status  # a new row starts INACTIVE
        linked = old_subscriber_id is None and sub.subscriber_id is not None and not created
        if changed or linked:
            # An orphan getting its user is published too: for that user, access just changed.
            _record_status_change(sub, old_status, snapshot.observed_at, cause, _join(
                note, claim_note, f"linked to user {sub.subscriber.external_id}" if linked else ""))
        elif claim_note and not sub.status_changes.filter(note__contains=claim_note).exists():
            # No status change, but support must see the conflicting claim once (not on every event).
            StatusChange.objects.create(subscription=sub, old_status=old_status, new_status=sub.status,
                                        occurred_at=snapshot.observed_at, cause=cause.kind, cause_ref=cause.ref,
                                        staff_user_id=cause.staff_user_id, note=_join(note, claim_note))
        _after_commit(sub.subscriber_id, old_subscriber_id)
        outcome = "created" if created else ("updated" if changed else "unchanged")
        return ApplyResult(sub.pk, outcome, old_status, sub.status, added)


def subscription_link_subscriber(*, subscription_id: int, subscriber: Subscriber, cause: Cause) -> Subscription:
    """Staff links an orphan (or moves a subscription) to a subscriber. The new owner's state is
    published on the stream; a previous owner gets an event too (their access may just have ended)."""
    if subscriber is None:
        raise ValueError("a subscriber is required")
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription_id)
        previous = sub.subscriber
        if previous is not None and previous.pk == subscriber.pk:
            return sub
        sub.subscriber = subscriber
        sub.save(update_fields=["subscriber", "updated_at"])
        moved = f" (was {previous.external_id})" if previous is not None else ""
        _record_status_change(sub, sub.status, timezone.now(), cause,
                              _join(f"linked to user {subscriber.external_id}{moved}", cause.note))
        if previous is not None:
            _publish(sub, sub.status, timezone.now(), subscriber=previous)
        _after_commit(sub.subscriber_id, previous.pk if previous is not None else None)
    return sub


def _lock_or_create(snapshot: Snapshot) -> tuple[Subscription, bool]:
    key = {"provider": snapshot.provider, "provider_subscription_id": snapshot.provider_subscription_id}
    sub = Subscription.objects.select_for_update().filter(**key).first()
    if sub is not None:
        return sub, False
    try:
        with transaction.atomic():  # savepoint: a concurrent creator wins on the unique constraint
            return Subscription.objects.create(**key, status=Status.INACTIVE), True
    except IntegrityError:
        return Subscription.objects.select_for_update().get(**key), False


def _resolve_subscriber(sub: Subscription, snapshot: Snapshot) -> Subscriber | None:
    """The app's user id if the store carried it, else a store identity, else the superseded
    subscription's owner. None: keep the current link (or stay an orphan)."""
    if snapshot.user_id not in (None, ""):
        subscriber = subscriber_get_or_create(external_id=snapshot.user_id, email=snapshot.email)
        if snapshot.identity_field:
            subscriber_set_identity(subscriber=subscriber, field=snapshot.identity_field,
                                    value=snapshot.identity_value)
        return subscriber
    if snapshot.identity_field:
        found = subscriber_by_identity(snapshot.identity_field, snapshot.identity_value)
        if found is not None:
            return found
    if sub.subscriber_id is None and snapshot.replaces:
        old = Subscription.objects.filter(provider=snapshot.provider,
                                          provider_subscription_id=snapshot.replaces).select_related("subscriber").first()
        if old is not None:
            return old.subscriber
    return None


def _product_for(snapshot: Snapshot) -> Product:
    """The catalogue entry for the store product; an unknown product is added unmapped (it grants
    nothing until staff map it) so that it shows up in the admin."""
    defaults = {"period_unit": snapshot.period_unit or "", "period_value": snapshot.period_value,
                "currency": (snapshot.currency or "").upper(), "label": snapshot.product_label[:255]}
    key = {"provider": snapshot.provider, "store_product_id": snapshot.store_product_id}
    product = Product.objects.filter(**key).first()  # the usual case: one query, no savepoint
    if product is None:
        try:
            with transaction.atomic():
                product = Product.objects.create(**key, **defaults)
        except IntegrityError:  # a concurrent writer added it first
            product = Product.objects.get(**key)
    if snapshot.product_label and not product.label:  # a label staff chose is never overwritten
        Product.objects.filter(pk=product.pk, label="").update(label=snapshot.product_label[:255])
        product.label = snapshot.product_label[:255]
    return product


def _record_transactions(sub: Subscription, snapshot: Snapshot) -> int:
    if not snapshot.transactions:
        return 0
    ids = [t.provider_transaction_id for t in snapshot.transactions]
    existing = set(Transaction.objects.filter(provider=sub.provider, provider_transaction_id__in=ids)
                   .values_list("provider_transaction_id", flat=True))
    new = {}
    for t in snapshot.transactions:
        if t.provider_transaction_id in existing or t.provider_transaction_id in new:
            continue
        new[t.provider_transaction_id] = Transaction(
            provider=sub.provider, provider_transaction_id=t.provider_transaction_id, subscription=sub,
            kind=t.kind, amount_minor=abs(t.amount_minor) if t.amount_minor is not None else None,
            currency=(t.currency or "").upper(), occurred_at=t.occurred_at, environment=snapshot.environment,
            raw=t.raw)
    # ignore_conflicts: a concurrent writer recording the same store transaction is not an error
    Transaction.objects.bulk_create(new.values(), ignore_conflicts=True)
    return len(new)


def _supersede(sub: Subscription, snapshot: Snapshot) -> None:
    old = list(Subscription.objects.select_for_update().filter(
        provider=snapshot.provider, provider_subscription_id=snapshot.replaces, replaced_by__isnull=True)
        .exclude(pk=sub.pk).values_list("pk", "subscriber_id"))
    if not old:
        return
    Subscription.objects.filter(pk__in=[pk for pk, _ in old]).update(replaced_by=sub, updated_at=timezone.now())
    _after_commit(*(owner for _, owner in old))


def _record_status_change(sub: Subscription, old_status: str, occurred_at: datetime, cause: Cause, note: str) -> None:
    """A history row, and an outbox row when the subscription has a user. An orphan's changes are not
    published (consumers key everything on userId); linking it later publishes its state."""
    StatusChange.objects.create(subscription=sub, old_status=old_status, new_status=sub.status,
                                occurred_at=occurred_at, cause=cause.kind, cause_ref=cause.ref,
                                staff_user_id=cause.staff_user_id, note=note)
    if sub.subscriber_id is not None:
        _publish(sub, old_status, occurred_at)


def _publish(sub: Subscription, old_status: str, occurred_at: datetime, *, subscriber=None) -> None:
    event_id = uuid.uuid4()
    payload = outbox.event_payload(event_id=str(event_id), subscription=sub, old_status=old_status,
                                   occurred_at=occurred_at, subscriber=subscriber)
    row = Outbox.objects.create(event_id=event_id, subscription=sub, payload=payload)
    after_commit.publish(row.pk)  # coalesced: one relay call per transaction


def _after_commit(*subscriber_ids) -> None:
    after_commit.refresh(*subscriber_ids)  # coalesced: one batched cache refresh per transaction


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def snapshot_as_dict(snapshot: Snapshot) -> dict:
    """For logs and the admin: a snapshot as JSON-able data."""
    data = asdict(snapshot)
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}
