"""The one way to write the audit log: `record(...)` after a staff or API-key action, in the same
database transaction as the change it describes (so a change and its entry land together)."""

from accounts.models import Subscriber

from .models import AuditEntry


def actor_fields(actor) -> dict:
    """A staff user (request.user) or an API caller (accounts.principals.Principal) as the entry's actor."""
    if actor is None:
        return {"actor_label": "system"}
    api_key_id = getattr(actor, "api_key_id", None)
    if api_key_id is not None:
        return {"actor_api_key_id": api_key_id, "actor_label": f"API key {actor.name}"}
    if getattr(actor, "is_end_user", False):
        return {"actor_label": f"end user {actor.user_id} (app token)"}
    if getattr(actor, "pk", None) is not None:
        return {"actor_user": actor, "actor_label": actor.get_username()}
    return {"actor_label": str(actor)}


def record(*, actor, action: str, reason: str = "", subscriber: Subscriber | None = None,
           subscription_id: int | None = None, target: str = "", details: dict | None = None,
           undoes: AuditEntry | None = None) -> AuditEntry:
    """Write one audit entry. `details` holds what changed (before/after) and, for an action that can
    be undone, `"undoable": True` plus what the undo needs (support/undo.py reads it)."""
    return AuditEntry.objects.create(**actor_fields(actor), action=action, reason=reason, subscriber=subscriber,
                                     subscription_id=subscription_id, target=target, details=details or {},
                                     undoes=undoes)


def record_api_call(*, actor, action: str, user_id: str | None = None, subscription_id: int | None = None,
                    details: dict | None = None) -> AuditEntry:
    """An API call that changed something (verify, Stripe subscribe, cancel, change plan), by a
    service's API key or an end user's token: who, for which user, what changed. Never on the check
    API (read-only). Recorded after the call's own write (the store was called in between)."""
    subscriber = Subscriber.objects.filter(external_id=user_id).first() if user_id else None
    return record(actor=actor, action=action, subscriber=subscriber, subscription_id=subscription_id,
                  target=f"billing.subscription:{subscription_id}" if subscription_id else "",
                  details={"user_id": user_id, **(details or {})})
