"""The outbox relay: status changes reach the Redis stream right after commit, and again from a beat
task for anything left unpublished (Redis was down). Several relays may run at once: rows are
claimed with SELECT … FOR UPDATE SKIP LOCKED. Delivery is at least once; eventId is stable."""

import json
import logging
from datetime import datetime

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Subscriber

from . import entitlement_cache
from .db import update_rows
from .models import Outbox, Product, Subscription
from .redis_client import get_redis
from .statuses import Status, grants_access, is_entitled
from .times import isoformat_z

logger = logging.getLogger(__name__)


def payload_draft(*, event_id: str, subscription, old_status: str, occurred_at: datetime, subscriber) -> dict:
    """The stream entry's `event` JSON (ARCHITECTURE.md contract; keys are camelCase; docs/events.md) as
    of now, from the subscription as it is in memory, but for what other rows decide
    (`isSubscribed`, `entitlements`): payloads_complete() adds those once the writes are done."""
    return {
        "eventId": event_id,
        "userId": subscriber.external_id if subscriber else None,
        "oldStatus": old_status,
        "newStatus": subscription.status,
        "provider": subscription.provider,
        "subscriptionId": subscription.provider_subscription_id,
        "billingSubscriptionId": str(subscription.pk),
        "productId": subscription.store_product_id or None,
        "entitlements": [],
        "expiresAt": isoformat_z(subscription.expires_at),
        "accessEndsAt": isoformat_z(subscription.access_ends_at),
        "isSubscribed": False,
        "environment": subscription.environment,
        "occurredAt": isoformat_z(occurred_at),
    }


def payloads_complete(drafts: list[tuple[dict, int | None, int | None]]) -> list[dict]:
    """Each (draft, subscriber id, product id) completed: `isSubscribed` from the user's current
    subscriptions as the database has them now, `entitlements` from the product. Two queries in all."""
    subscriber_ids = {s for _, s, _ in drafts if s is not None}
    product_ids = {p for _, _, p in drafts if p is not None}
    now = timezone.now()
    subscribed = dict.fromkeys(subscriber_ids, False)
    if subscriber_ids:
        for subscriber_id, status, expires_at, grace_until in (
                Subscription.objects.filter(subscriber_id__in=subscriber_ids, replaced_by__isnull=True)
                .values_list("subscriber_id", "status", "expires_at", "grace_until")):
            subscribed[subscriber_id] = subscribed[subscriber_id] or is_entitled(status, expires_at, grace_until, now)
    entitlements: dict[int, list[str]] = {p: [] for p in product_ids}
    if product_ids:
        for product_id, name in (Product.entitlements.through.objects.filter(product_id__in=product_ids)
                                 .values_list("product_id", "entitlement__name")):
            entitlements[product_id].append(name)
    return [_styled({**draft, "isSubscribed": subscribed.get(subscriber_id, False),
                     "entitlements": sorted(entitlements.get(product_id, []))})
            for draft, subscriber_id, product_id in drafts]


def _styled(payload: dict) -> dict:
    """BILLING_EVENTS_STATUS_STYLE=simple: the statuses say whether the USER is entitled (`ACTIVE`) or not
    (`EXPIRED`), for consumers that act on those two only (docs/events.md, "Status style"): a refund,
    a hold or a revocation reads `EXPIRED` unless another subscription still entitles the user, and
    then `ACTIVE`, never a loss. `oldStatus` says whether this subscription's previous status granted
    access. Applied when the row is written: what the outbox holds is what is published."""
    if settings.BILLING_EVENTS_STATUS_STYLE != "simple":
        return payload
    return {**payload, "oldStatus": Status.ACTIVE if grants_access(payload["oldStatus"]) else Status.EXPIRED,
            "newStatus": Status.ACTIVE if payload["isSubscribed"] else Status.EXPIRED}


def publish_pending(*, ids: list[int] | None = None, limit: int = 500) -> int:
    """Publish unpublished outbox rows (only `ids` when given), oldest first. Returns how many were
    published. Rows are claimed with FOR UPDATE SKIP LOCKED, so relays running at once never publish
    the same row twice; a Redis failure leaves the rows unpublished (attempts and last_error recorded)."""
    client = get_redis()
    if client is None:
        return 0  # no Redis configured: events wait in the outbox
    published = 0
    while True:
        with transaction.atomic():
            rows = Outbox.objects.select_for_update(skip_locked=True).filter(published_at__isnull=True)
            if ids is not None:
                rows = rows.filter(pk__in=ids)
            rows = list(rows.order_by("id")[:limit])
            if not rows:
                return published
            try:
                pipe = client.pipeline(transaction=False)
                for row in rows:
                    pipe.xadd(settings.BILLING_EVENTS_STREAM, {"event": json.dumps(row.payload)},
                              maxlen=settings.BILLING_EVENTS_STREAM_MAXLEN, approximate=True)
                stream_ids = pipe.execute()
            except redis.RedisError as exc:
                Outbox.objects.filter(pk__in=[r.pk for r in rows]).update(
                    attempts=F("attempts") + 1, last_error=str(exc)[:1000])
                logger.warning("outbox relay: Redis unavailable (%s); %d events wait", exc, len(rows))
                return published
            # Each row keeps the entry id XADD gave it (the support timeline shows it; a consumer's log
            # names it). The rows are locked: their in-memory attempts are current. One UPDATE for all.
            now = timezone.now()
            for row, stream_id in zip(rows, stream_ids, strict=True):
                row.published_at, row.last_error, row.attempts = now, "", row.attempts + 1
                row.stream_id = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
            update_rows(Outbox, rows, ["published_at", "last_error", "attempts", "stream_id"])
            published += len(rows)
        if ids is None:
            # Rows left for the periodic relay mean the after-commit work failed (Redis was down):
            # those users' cached entitlements may be stale too, so refresh them now.
            _refresh_caches({r.payload.get("userId") for r in rows} - {None})
        if len(rows) < limit:
            return published


def _refresh_caches(external_ids: set[str]) -> None:
    entitlement_cache.refresh_many(list(Subscriber.objects.filter(external_id__in=external_ids)
                                        .values_list("pk", flat=True)))


def publish_pending_after_commit(ids: list[int]) -> None:
    """on_commit hook: never let a relay failure surface in the write path (beat retries)."""
    try:
        publish_pending(ids=ids)
    except Exception:  # the beat relay picks these up; the write itself is committed
        logger.exception("outbox relay after commit failed; left for the periodic relay")
