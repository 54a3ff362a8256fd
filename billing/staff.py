"""Staff fixes: grant, extend and revoke access by hand (promotional, goodwill, support), always with a
reason and the staff member recorded on the status change. All through apply_snapshot."""

import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import Subscriber

from .apply import apply_snapshot
from .models import Entitlement, Product, Subscription
from .snapshots import Cause, CauseKind, Environment, Provider, Snapshot
from .statuses import Status


class StaffActionError(ValueError):
    """A staff action that cannot be done as asked; the message says why, for the admin to show."""


def _cause(reason: str, staff_user) -> Cause:
    reason = (reason or "").strip()
    if not reason:
        raise StaffActionError("A reason is required: say why (it is kept in the subscription's history).")
    if staff_user is None or not getattr(staff_user, "pk", None):
        raise StaffActionError("The staff member doing this is required.")
    return Cause(CauseKind.STAFF, ref=f"staff:{staff_user.get_username()}", staff_user_id=staff_user.pk, note=reason)


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
    result = apply_snapshot(Snapshot(
        provider=Provider.MANUAL, provider_subscription_id=f"manual-{uuid.uuid4()}", status=Status.ACTIVE,
        observed_at=now, store_product_id=target.store_product_id, user_id=subscriber.external_id,
        environment=Environment.PRODUCTION, auto_renew=False, started_at=now, current_period_start=now,
        current_period_end=until, expires_at=until,
        raw={"granted_by": staff_user.get_username(), "reason": cause.note,
             "until": until.isoformat() if until else None}), cause)
    return Subscription.objects.get(pk=result.subscription_id)


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
    apply_snapshot(Snapshot(
        provider=Provider.MANUAL, provider_subscription_id=subscription.provider_subscription_id,
        status=Status.ACTIVE, observed_at=_not_before(now, subscription), environment=subscription.environment,
        expires_at=until, current_period_end=until,
        raw={**(subscription.raw_snapshot or {}), "extended_by": staff_user.get_username(), "reason": cause.note,
             "until": until.isoformat()}), cause)
    subscription.refresh_from_db()
    return subscription


def subscription_revoke(*, subscription: Subscription, reason: str, staff_user) -> Subscription:
    """End access now, whatever the provider: REVOKED locally. For a store subscription this does not
    refund or cancel anything at the store, and a later event from the store (a renewal, a restore)
    overrides it: cancel or refund in the store too (or through the store's own admin action)."""
    cause = _cause(reason, staff_user)
    now = timezone.now()
    apply_snapshot(Snapshot(
        provider=subscription.provider, provider_subscription_id=subscription.provider_subscription_id,
        status=Status.REVOKED, observed_at=_not_before(now, subscription), environment=subscription.environment,
        ended_at=now, auto_renew=False if subscription.provider == Provider.MANUAL else None), cause)
    subscription.refresh_from_db()
    return subscription


def _not_before(now: datetime, subscription: Subscription) -> datetime:
    # A staff fix is the newest state we know even if a store clock ran ahead of ours.
    last = subscription.last_event_at
    return now if last is None or last <= now else last
