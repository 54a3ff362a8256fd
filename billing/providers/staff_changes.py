"""What every store's staff actions share (billing/providers/<store>/services.py): the reason and the
staff member as a Cause, and the order of work — the store first (through its client), then its state
re-read and applied through the one write path together with the audit entry, in one transaction.

A store call that fails changes nothing here and records nothing (the store did nothing). A store call
that succeeded but whose re-read fails is still recorded in the audit log (the store did change), and
the error is raised so staff see it: the store's own notification, or a re-sync, brings the state."""

from collections.abc import Callable

from django.db import transaction

from audit.records import record
from billing.apply import ApplyResult, apply_snapshot
from billing.models import Subscription
from billing.snapshots import Cause, CauseKind, Snapshot

from .base import ProviderError

REFUND_PERMISSION = "billing.refund_at_store"
FIX_PERMISSION = "billing.change_subscription"


class StoreActionError(ValueError):
    """A staff action that cannot be done as asked; the message says why (shown on the admin page)."""


def staff_cause(reason: str, staff_user, what: str) -> Cause:
    """The Cause of a staff change: who (required) and why (required, kept on the status change)."""
    reason = (reason or "").strip()
    if not reason:
        raise StoreActionError("A reason is required: say why (it is kept in the subscription's history).")
    if staff_user is None or not getattr(staff_user, "pk", None):
        raise StoreActionError("The staff member doing this is required.")
    return Cause(CauseKind.STAFF, ref=f"staff:{staff_user.get_username()}", staff_user_id=staff_user.pk,
                 note=f"{what}: {reason}")


def ensure_provider(subscription: Subscription, provider: str, store: str) -> None:
    if subscription.provider != provider:
        article = "an" if store[:1].upper() in "AEIOU" else "a"
        raise StoreActionError(f"{subscription} is not {article} {store} subscription.")


def ensure_allowed(staff_user, permission: str) -> None:
    """Services check the permission too: an action is refused whatever page or command called it."""
    if not getattr(staff_user, "has_perm", None) or not staff_user.has_perm(permission):
        raise StoreActionError(f"You do not have the permission this needs ({permission}).")


def record_store_action(*, subscription: Subscription, staff_user, action: str, reason: str,
                        details: dict) -> None:
    record(actor=staff_user, action=action, reason=reason.strip(), subscriber=subscription.subscriber,
           subscription_id=subscription.pk, target=f"billing.subscription:{subscription.pk}", details=details)


def apply_after_store_action(*, subscription: Subscription, staff_user, action: str, reason: str, cause: Cause,
                             details: dict, reread: Callable[[], Snapshot]) -> ApplyResult:
    """After the store did the change: re-read its state (`reread`, a store call, outside any
    transaction), then apply it and record the audit entry in one transaction."""
    try:
        snapshot = reread()
    except ProviderError as exc:
        record_store_action(subscription=subscription, staff_user=staff_user, action=action, reason=reason,
                            details={**details, "reread_failed": str(exc)[:500]})
        raise StoreActionError(f"done at the store, but its new state could not be read back ({exc}); the "
                               "store's notification or a re-sync will bring it") from exc
    with transaction.atomic():
        result = apply_snapshot(snapshot, cause)
        record_store_action(subscription=subscription, staff_user=staff_user, action=action, reason=reason,
                            details={**details, "old_status": result.old_status, "new_status": result.new_status})
    return result
