"""Staff fixes: grant, extend and revoke access by hand (promotional, goodwill, support), move a
subscription to another user, re-sync it from its store, and put back what a fix changed (undo),
always with a reason and the staff member recorded on the status change and in the audit log, in the
same transaction as the change. All through the one write path (apply_snapshot,
subscription_link_subscriber).

An undoable fix records `details["undoable"] = True` with the state before and after it
(`subscription_state`); support/undo.py reads them back and calls the functions here with `undoes=`."""

import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import Subscriber
from audit.models import AuditEntry
from audit.records import record

from .apply import ApplyResult, apply_snapshot, subscription_link_subscriber
from .models import Entitlement, Product, Subscription
from .providers import registry
from .snapshots import Cause, CauseKind, Environment, Provider, Snapshot
from .statuses import Status


class StaffActionError(ValueError):
    """A staff action that cannot be done as asked; the message says why, for the admin to show."""


def _cause(reason: str, staff_user) -> Cause:
    reason = (reason or "").strip()
    if not reason:
        raise StaffActionError("A reason is required: say why (it is kept in the audit log and the history).")
    if staff_user is None or not getattr(staff_user, "pk", None):
        raise StaffActionError("The staff member doing this is required.")
    return Cause(CauseKind.STAFF, ref=f"staff:{staff_user.get_username()}", staff_user_id=staff_user.pk, note=reason)


def subscription_state(sub: Subscription) -> dict:
    """What an undo needs to put back, as JSON: the state fields a staff fix changes, the owner, and
    the store time of the state (a newer store event since the fix makes the undo unsafe)."""
    def iso(value):
        return value.isoformat() if value is not None else None

    return {"status": sub.status, "expires_at": iso(sub.expires_at), "grace_until": iso(sub.grace_until),
            "current_period_end": iso(sub.current_period_end), "auto_renew": sub.auto_renew,
            "ended_at": iso(sub.ended_at), "last_event_at": iso(sub.last_event_at),
            "user_id": sub.subscriber.external_id if sub.subscriber_id else None}


def _locked(subscription: Subscription) -> Subscription:
    return Subscription.objects.select_for_update(of=("self",)).select_related("subscriber").get(pk=subscription.pk)


def _record(*, staff_user, action: str, cause: Cause, sub: Subscription, details: dict,
            undoes: AuditEntry | None = None) -> AuditEntry:
    return record(actor=staff_user, action=action, reason=cause.note, subscriber=sub.subscriber,
                  subscription_id=sub.pk, target=f"billing.subscription:{sub.pk}", details=details, undoes=undoes)


def _future(until: datetime | None, now: datetime) -> None:
    if until is None:
        return
    if until.tzinfo is None:
        raise StaffActionError("The end date must carry a time zone.")
    if until <= now:
        raise StaffActionError("The end date must be in the future.")


def manual_product_for(*, product: Product | None = None, entitlement: Entitlement | None = None) -> Product:
    """The manual-provider product a grant uses: the product itself if it is a manual one; for a store
    product, its manual twin granting the same entitlements; for an entitlement, `entitlement:<name>`."""
    if (product is None) == (entitlement is None):
        raise StaffActionError("Give either a product or an entitlement to grant.")
    if product is not None and product.provider == Provider.MANUAL:
        return product
    if product is not None:
        store_product_id = f"{product.provider}:{product.store_product_id}"
        label, granted = f"{product} (granted by staff)", list(product.entitlements.all())
    else:
        store_product_id = f"entitlement:{entitlement.name}"
        label, granted = f"{entitlement.name} (granted by staff)", [entitlement]
    with transaction.atomic():
        twin, created = Product.objects.get_or_create(provider=Provider.MANUAL, store_product_id=store_product_id,
                                                      defaults={"label": label})
        if created or not twin.entitlements.exists():
            twin.entitlements.set(granted)
    return twin


def manual_grant(*, subscriber: Subscriber, until: datetime | None, reason: str, staff_user,
                 product: Product | None = None, entitlement: Entitlement | None = None) -> Subscription:
    """Grant access through a new `manual` subscription, ACTIVE until `until` (None: open-ended)."""
    cause = _cause(reason, staff_user)
    now = timezone.now()
    _future(until, now)
    target = manual_product_for(product=product, entitlement=entitlement)
    with transaction.atomic():
        result = apply_snapshot(Snapshot(
            provider=Provider.MANUAL, provider_subscription_id=f"manual-{uuid.uuid4()}", status=Status.ACTIVE,
            observed_at=now, store_product_id=target.store_product_id, user_id=subscriber.external_id,
            environment=Environment.PRODUCTION, auto_renew=False, started_at=now, current_period_start=now,
            current_period_end=until, expires_at=until,
            raw={"granted_by": staff_user.get_username(), "reason": cause.note,
                 "until": until.isoformat() if until else None}), cause)
        sub = Subscription.objects.select_related("subscriber").get(pk=result.subscription_id)
        _record(staff_user=staff_user, action="grant", cause=cause, sub=sub,
                details={"undoable": True, "product": target.store_product_id, "after": subscription_state(sub)})
    return sub


def manual_extend(*, subscription: Subscription, until: datetime, reason: str, staff_user) -> Subscription:
    """Move a manual subscription's end later (reactivating it if it had ended)."""
    cause = _cause(reason, staff_user)
    if subscription.provider != Provider.MANUAL:
        raise StaffActionError(f"Only staff grants can be extended here; a {subscription.provider} subscription "
                               "is extended in its store (or grant a manual subscription beside it).")
    if until is None:
        raise StaffActionError("Give the new end date (to make a grant open-ended, grant a new one).")
    now = timezone.now()
    _future(until, now)
    if subscription.expires_at is not None and until <= subscription.expires_at and \
            subscription.status in (Status.ACTIVE, Status.TRIAL):
        raise StaffActionError(f"The new end must be after the current one ({subscription.expires_at:%Y-%m-%d %H:%M} "
                               "UTC); to end access earlier, revoke.")
    with transaction.atomic():
        locked = _locked(subscription)
        before = subscription_state(locked)
        apply_snapshot(Snapshot(
            provider=Provider.MANUAL, provider_subscription_id=subscription.provider_subscription_id,
            status=Status.ACTIVE, observed_at=_not_before(now, locked), environment=subscription.environment,
            expires_at=until, current_period_end=until,
            raw={**(locked.raw_snapshot or {}), "extended_by": staff_user.get_username(), "reason": cause.note,
                 "until": until.isoformat()}), cause)
        subscription.refresh_from_db()
        # An open-ended grant made finite cannot be put back: a snapshot's None keeps the stored end.
        _record(staff_user=staff_user, action="extend", cause=cause, sub=subscription,
                details={"undoable": before["expires_at"] is not None, "before": before,
                         "after": subscription_state(subscription)})
    return subscription


def subscription_revoke(*, subscription: Subscription, reason: str, staff_user, action: str = "revoke",
                        undoes: AuditEntry | None = None) -> Subscription:
    """End access now, whatever the provider: REVOKED locally. For a store subscription this does not
    refund or cancel anything at the store, and a later event from the store (a renewal, a restore)
    overrides it: cancel or refund in the store too (or through the store's own admin action)."""
    cause = _cause(reason, staff_user)
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(subscription)
        before = subscription_state(locked)
        apply_snapshot(Snapshot(
            provider=subscription.provider, provider_subscription_id=subscription.provider_subscription_id,
            status=Status.REVOKED, observed_at=_not_before(now, locked), environment=subscription.environment,
            ended_at=now, auto_renew=False if subscription.provider == Provider.MANUAL else None), cause)
        subscription.refresh_from_db()
        _record(staff_user=staff_user, action=action, cause=cause, sub=subscription, undoes=undoes,
                details={"undoable": undoes is None, "before": before, "after": subscription_state(subscription)})
    return subscription


def subscription_restore(*, subscription: Subscription, state: dict, reason: str, staff_user,
                         undoes: AuditEntry) -> Subscription:
    """Put back the status and dates of `state` (a `subscription_state` recorded before a revoke or an
    extension): a staff snapshot through the write path, so the change is published like any other.
    The audit entry undoes `undoes`. (`ended_at` stays as the revoke set it: None keeps.)"""
    cause = _cause(reason, staff_user)
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(subscription)
        before = subscription_state(locked)
        apply_snapshot(Snapshot(
            provider=locked.provider, provider_subscription_id=locked.provider_subscription_id,
            status=state["status"], observed_at=_not_before(now, locked), environment=locked.environment,
            expires_at=_parse(state["expires_at"]), grace_until=_parse(state["grace_until"]),
            current_period_end=_parse(state["current_period_end"]), auto_renew=state["auto_renew"]), cause)
        subscription.refresh_from_db()
        _record(staff_user=staff_user, action=f"undo_{undoes.action}", cause=cause, sub=subscription, undoes=undoes,
                details={"before": before, "after": subscription_state(subscription)})
    return subscription


def subscription_move(*, subscription: Subscription, subscriber: Subscriber, reason: str, staff_user,
                      allow_move: bool = True, undoes: AuditEntry | None = None) -> Subscription:
    """Link an orphan to a user, or move a subscription (a purchase) to another user: both users are
    told on the stream (billing.apply.subscription_link_subscriber). Undoable when it had an owner (an
    orphan cannot be made an orphan again: move it to the right user instead)."""
    cause = _cause(reason, staff_user)
    with transaction.atomic():
        locked = _locked(subscription)
        previous = locked.subscriber
        if previous is not None and previous.pk == subscriber.pk:
            raise StaffActionError(f"already linked to user {subscriber.external_id}")
        if previous is not None and not allow_move:
            raise StaffActionError(f"already linked to user {previous.external_id}; tick 'move' to move it")
        before = subscription_state(locked)
        sub = subscription_link_subscriber(subscription_id=locked.pk, subscriber=subscriber, cause=cause)
        action = "link" if previous is None else "move"
        _record(staff_user=staff_user, action=f"undo_{undoes.action}" if undoes else action, cause=cause, sub=sub,
                undoes=undoes, details={"undoable": undoes is None and previous is not None, "before": before,
                                        "after": subscription_state(sub)})
    return sub


def subscription_resync_by_staff(*, subscription: Subscription, reason: str, staff_user) -> ApplyResult:
    """Re-read the store's state (outside any transaction: a network call) and apply it with the audit
    entry in the same transaction. Raises the adapter's errors (NotSupported, NotConfigured, ...)."""
    cause = _cause(reason, staff_user)
    snapshot = registry.get_adapter(subscription.provider).fetch(subscription)
    with transaction.atomic():
        before = subscription_state(_locked(subscription))
        result = apply_snapshot(snapshot, Cause(CauseKind.STAFF, ref=cause.ref, staff_user_id=cause.staff_user_id,
                                                note=f"re-synced from the store: {cause.note}"))
        subscription.refresh_from_db()
        _record(staff_user=staff_user, action="resync", cause=cause, sub=subscription,
                details={"outcome": result.outcome, "before": before, "after": subscription_state(subscription)})
    return result


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _not_before(now: datetime, subscription: Subscription) -> datetime:
    # A staff fix is the newest state we know even if a store clock ran ahead of ours.
    last = subscription.last_event_at
    return now if last is None or last <= now else last
