"""Undo a staff fix from its audit entry (docs/support.md "Undo"): a grant is revoked, a revoke or an
extension puts back the status and dates recorded before it, a move gives the subscription back to its
previous owner. Always through billing.staff (the one write path, so the stream hears of it), with a
reason, as an audit entry of its own whose `undoes` names the original; both stay.

Refused, with the reason shown to staff: an entry that is not undoable, already undone, itself an undo,
or whose subscription changed since the fix (a newer store event, another fix, the expiry sweep):
putting back an old state over a newer one would hide what the store said since."""

from dataclasses import dataclass

from django.db import transaction

from accounts.models import Subscriber
from audit.models import AuditEntry
from billing import staff
from billing.models import Subscription


class UndoRefused(Exception):
    """The entry cannot be undone; the message says why, for the page to show."""


@dataclass(frozen=True)
class UndoPlan:
    entry: AuditEntry
    subscription: Subscription
    description: str  # what the undo will do, in words


def _what(entry: AuditEntry, sub: Subscription) -> str:
    before = entry.details.get("before") or {}
    if entry.action == "grant":
        return f"Revoke the grant {sub.provider_subscription_id}: access from it ends now."
    if entry.action == "revoke":
        until = before.get("expires_at") or "open-ended"
        return f"Restore the status {before.get('status')} (until {until}) that the revoke took away."
    if entry.action == "extend":
        return f"Put the end back to {before.get('expires_at')} (status {before.get('status')})."
    return f"Move the subscription back to user {before.get('user_id')}."


UNDOABLE_ACTIONS = ("grant", "revoke", "extend", "move")


def undo_plan(entry: AuditEntry, *, subscription: Subscription | None = None) -> UndoPlan:
    """What undoing `entry` would do, or UndoRefused saying why it cannot be undone."""
    if entry.undoes_id is not None:
        raise UndoRefused("This entry is itself an undo; to change things again, make a new fix.")
    if entry.action not in UNDOABLE_ACTIONS or not entry.details.get("undoable"):
        raise UndoRefused(f"A {entry.action.replace('_', ' ')} cannot be undone here.")
    done = entry.undone_by.order_by("created_at").first()
    if done is not None:
        raise UndoRefused(f"Already undone by {done.actor_label} at {done.created_at:%Y-%m-%d %H:%M} UTC.")
    sub = subscription or Subscription.objects.select_related("subscriber").filter(pk=entry.subscription_id).first()
    if sub is None:
        raise UndoRefused("Its subscription no longer exists.")
    after, now = entry.details.get("after") or {}, staff.subscription_state(sub)
    if now["last_event_at"] != after.get("last_event_at"):
        raise UndoRefused(f"The subscription changed since this fix (a newer event at {now['last_event_at']}): "
                          "undoing it would overwrite that. Look at its history and fix it by hand.")
    if now["status"] != after.get("status") or now["user_id"] != after.get("user_id"):
        raise UndoRefused(f"The subscription changed since this fix (now {now['status']}, user "
                          f"{now['user_id'] or 'none'}; the fix left {after.get('status')}, user "
                          f"{after.get('user_id') or 'none'}). Look at its history and fix it by hand.")
    return UndoPlan(entry, sub, _what(entry, sub))


def entry_undo(*, entry_id: int, reason: str, staff_user) -> AuditEntry:
    """Undo the entry (UndoRefused, or billing.staff.StaffActionError for a missing reason). The entry
    row is locked first: two staff undoing the same fix at once get one undo and one refusal."""
    with transaction.atomic():
        entry = AuditEntry.objects.select_for_update().get(pk=entry_id)
        sub = (Subscription.objects.select_for_update(of=("self",)).select_related("subscriber")
               .filter(pk=entry.subscription_id).first())
        plan = undo_plan(entry, subscription=sub)
        before = entry.details.get("before") or {}
        if entry.action == "grant":
            staff.subscription_revoke(subscription=plan.subscription, reason=reason, staff_user=staff_user,
                                      action="undo_grant", undoes=entry)
        elif entry.action in ("revoke", "extend"):
            staff.subscription_restore(subscription=plan.subscription, state=before, reason=reason,
                                       staff_user=staff_user, undoes=entry)
        else:
            previous = Subscriber.objects.filter(external_id=before.get("user_id")).first()
            if previous is None:
                raise UndoRefused(f"The previous owner (user {before.get('user_id')}) no longer exists.")
            staff.subscription_move(subscription=plan.subscription, subscriber=previous, reason=reason,
                                    staff_user=staff_user, undoes=entry)
        return entry.undone_by.get()
