"""Changes a user asks the store to make (cancel at period end, change plan). The store does it;
whatever state it reports back goes through the one write path."""

from .apply import apply_snapshot
from .models import Subscription
from .providers import get_adapter
from .snapshots import Cause, CauseKind


def subscription_cancel(*, subscription: Subscription, actor: str) -> None:
    """Stop renewal at period end, at the store. Raises NotSupported where the store has no server-side
    cancel (Apple: the user manages it in the App Store); Google cancels through subscriptionsv2.cancel."""
    snapshot = get_adapter(subscription.provider).cancel(subscription)
    if snapshot is not None:
        apply_snapshot(snapshot, Cause(CauseKind.API, ref=f"cancel by {actor}"))


def subscription_change_plan(*, subscription: Subscription, price_id: str, actor: str) -> None:
    snapshot = get_adapter(subscription.provider).change_plan(subscription, price_id=price_id)
    if snapshot is not None:
        apply_snapshot(snapshot, Cause(CauseKind.API, ref=f"change plan to {price_id} by {actor}"))
