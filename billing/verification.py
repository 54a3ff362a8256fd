"""Purchase verification: an app sends a store purchase, we confirm it with the store (server to
server) and apply what the store says, linked to the user, before anything is granted."""

import dataclasses
import logging

from django.db import transaction

from accounts.selectors import subscriber_by_identity
from accounts.services import subscriber_get_or_create

from .apply import ApplyResult, apply_snapshot
from .models import Drift, Subscription
from .providers import get_adapter
from .providers.base import ParseResult
from .snapshots import Cause, CauseKind, Snapshot


class PurchaseOwnedByAnotherUser(Exception):
    """The purchase is another user's: linked to them here, or (`claimed_by_store`) the store says
    another user bought it. `subscription` is unsaved (pk None) when we hold no row for it yet."""

    def __init__(self, subscription: Subscription, *, claimed_by_store: bool = False):
        self.subscription = subscription
        self.claimed_by_store = claimed_by_store
        what = f"{subscription.provider} subscription {subscription.provider_subscription_id}"
        if claimed_by_store:
            message = (f"The store says this purchase ({what}) was bought by another user of the app; it is not "
                       "linked to the verifying user.")
        else:
            message = f"This purchase ({what}) already belongs to another user."
        super().__init__(message)


class PurchaseNotProven(Exception):
    """The store confirms the purchase but not that the caller made it: the caller sent only its id (an
    App Store transaction id or legacy receipt) and the store's data does not name them. Nothing linked."""

    def __init__(self, subscription: Subscription):
        self.subscription = subscription
        super().__init__(
            "The store confirms this purchase, but nothing shows that this user made it. Send the signed "
            "transaction (StoreKit 2 jwsRepresentation), or set appAccountToken to this user's token when "
            "purchasing.")


class NothingToVerify(Exception):
    """The store answered, but the purchase holds no subscription (e.g. a consumable)."""


logger = logging.getLogger(__name__)


def _owner_conflict(provider: str, provider_subscription_id: str, subscriber_id: int) -> Subscription | None:
    existing = (Subscription.objects.filter(provider=provider, provider_subscription_id=provider_subscription_id)
                .only("pk", "provider", "provider_subscription_id", "subscriber_id").first())
    if existing is not None and existing.subscriber_id not in (None, subscriber_id):
        return existing
    return None


def _store_claims_another_user(snapshot: Snapshot, caller_id: str) -> str | None:
    """The user the store's own hint names (Apple's integer-form appAccountToken, Google's
    obfuscatedExternalAccountId, or a store identity a subscriber already holds) when that is not the
    caller; None when the store names the caller or nobody we can tell."""
    if snapshot.identity_field and snapshot.identity_value:
        holder = subscriber_by_identity(snapshot.identity_field, snapshot.identity_value)
        if holder is not None:
            return holder.external_id if holder.external_id != caller_id else None
    hinted = str(snapshot.user_id).strip() if snapshot.user_id not in (None, "") else ""
    return hinted if hinted and hinted != caller_id else None


def _names_caller(snapshot: Snapshot, subscriber) -> bool:
    """The store's own data names the caller: its user hint is the caller's id, or its store identity
    (an appAccountToken UUID) is one the caller already holds."""
    if snapshot.user_id not in (None, "") and str(snapshot.user_id).strip() == subscriber.external_id:
        return True
    if snapshot.identity_field and snapshot.identity_value:
        holder = subscriber_by_identity(snapshot.identity_field, snapshot.identity_value)
        return holder is not None and holder.pk == subscriber.pk
    return False


def _check_proof(result: ParseResult, subscriber) -> None:
    """A purchase named by id only links to the caller when the store's data names them (or the caller
    holds it already); else PurchaseNotProven. All or nothing, like the rest of verification."""
    if result.possession_proven:
        return
    for snap in result.snapshots:
        if _names_caller(snap, subscriber):
            continue
        row = (Subscription.objects
               .filter(provider=snap.provider, provider_subscription_id=snap.provider_subscription_id)
               .only("pk", "provider", "provider_subscription_id", "subscriber_id").first())
        if row is not None and row.subscriber_id == subscriber.pk:
            continue  # already theirs: a refresh links nothing new
        logger.warning("verify by user %s refused: %s subscription %s named by id only, and the store's data does "
                       "not name the user", subscriber.external_id, snap.provider, snap.provider_subscription_id)
        raise PurchaseNotProven(row or Subscription(provider=snap.provider,
                                                    provider_subscription_id=snap.provider_subscription_id))


def purchase_verify(*, provider: str, purchase: dict, user_id: str, ref: str = "") -> list[ApplyResult]:
    """Verify `purchase` with the store and apply its subscriptions to `user_id`, all or nothing.

    Raises the adapter's errors (InvalidPurchase, StoreUnavailable, NotConfigured, NotSupported),
    PurchaseOwnedByAnotherUser or PurchaseNotProven (nothing applied) or NothingToVerify. The adapter's follow-up work
    (e.g. acknowledging a Google purchase) runs after commit; its failures are logged, not fatal.

    The store's own user hint wins over the caller: a purchase the store says another user made is
    refused (e.g. a restore on a device shared by two accounts), never taken by whoever verifies first,
    and the hint's identity is never copied to the caller. A purchase the caller only names (an App Store
    transaction id: `possession_proven` false) is linked only when the store's data names the caller."""
    adapter = get_adapter(provider)
    result: ParseResult = adapter.verify(purchase, user_id=user_id)  # network call: outside any transaction
    if not result.snapshots:
        raise NothingToVerify(result.ignored_reason or "The store holds no subscription for this purchase.")
    cause = Cause(CauseKind.VERIFICATION, ref=ref or f"verify by user {user_id}", found_by=Drift.FoundBy.VERIFICATION)
    with transaction.atomic():
        subscriber = subscriber_get_or_create(external_id=user_id)
        for snap in result.snapshots:
            conflict = _owner_conflict(snap.provider, snap.provider_subscription_id, subscriber.pk)
            if conflict is not None:
                raise PurchaseOwnedByAnotherUser(conflict)
            claimed_by = _store_claims_another_user(snap, subscriber.external_id)
            if claimed_by is not None:
                logger.warning("verify by user %s refused: the store says %s subscription %s was bought by user %s",
                               user_id, snap.provider, snap.provider_subscription_id, claimed_by)
                row = (Subscription.objects.filter(provider=snap.provider,
                                                   provider_subscription_id=snap.provider_subscription_id).first()
                       or Subscription(provider=snap.provider, provider_subscription_id=snap.provider_subscription_id))
                raise PurchaseOwnedByAnotherUser(row, claimed_by_store=True)
        _check_proof(result, subscriber)
        results = [apply_snapshot(dataclasses.replace(snap, user_id=user_id), cause) for snap in result.snapshots]
        # A concurrent verification by another user may have linked it between our check and our lock:
        # apply_snapshot keeps the first owner, so look again and roll everything back if it is not us.
        for applied in results:
            owner = Subscription.objects.filter(pk=applied.subscription_id).values_list("subscriber_id", flat=True)
            if owner[0] != subscriber.pk:
                raise PurchaseOwnedByAnotherUser(Subscription.objects.get(pk=applied.subscription_id))
    for follow_up in result.after_apply:
        try:
            follow_up(results)
        except Exception:  # committed already; the store's own retries (or the re-poll) cover it
            logger.exception("after-verification step failed for %s purchase of user %s", provider, user_id)
    return results
