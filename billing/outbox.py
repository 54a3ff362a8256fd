"""The outbox relay: status changes reach the Redis stream right after commit, and again from a beat
task for anything left unpublished (Redis was down). Several relays may run at once: rows are
claimed with SELECT … FOR UPDATE SKIP LOCKED. Delivery is at least once; eventId is stable."""

import functools
import json
import logging
from datetime import datetime

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from .models import Entitlement, Outbox, Product, Subscription
from .redis_client import get_redis
from .statuses import is_entitled

logger = logging.getLogger(__name__)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def event_payload(*, event_id: str, subscription, old_status: str, occurred_at: datetime, subscriber=None) -> dict:
    """The stream entry's `event` JSON (ARCHITECTURE.md contract; keys are camelCase; docs/events.md).
    `subscriber`: the user the event is about when not the subscription's owner (a previous owner)."""
    subscriber = subscriber or subscription.subscriber
    now = timezone.now()
    states, entitlements = _states_and_entitlements(subscriber.pk if subscriber else None, subscription.product_id)
    is_subscribed = any(is_entitled(status, expires_at, grace_until, now) for status, expires_at, grace_until in states)
    return {
        "eventId": event_id,
        "userId": subscriber.external_id if subscriber else None,
        "oldStatus": old_status,
        "newStatus": subscription.status,
        "provider": subscription.provider,
        "subscriptionId": subscription.provider_subscription_id,
        "billingSubscriptionId": str(subscription.pk),
        "productId": subscription.store_product_id or None,
        "entitlements": entitlements,
        "expiresAt": _iso(subscription.expires_at),
        "accessEndsAt": _iso(subscription.access_ends_at),
        "isSubscribed": is_subscribed,
        "environment": subscription.environment,
        "occurredAt": _iso(occurred_at),
    }


@functools.cache
def _states_and_entitlements_sql() -> str:
    quote = connection.ops.quote_name
    sub, through = Subscription._meta, Product.entitlements.through._meta
    col = {name: quote(sub.get_field(name).column) for name in ("status", "expires_at", "grace_until", "subscriber",
                                                                 "replaced_by")}
    # Identifiers come from the models, values are parameters.
    return (f"SELECT 's', {col['status']}, {col['expires_at']}, {col['grace_until']} FROM {quote(sub.db_table)} "  # noqa: S608
            f"WHERE {col['subscriber']} = %s AND {col['replaced_by']} IS NULL "
            f"UNION ALL SELECT 'e', e.{quote(Entitlement._meta.get_field('name').column)}, NULL, NULL "
            f"FROM {quote(Entitlement._meta.db_table)} e JOIN {quote(through.db_table)} pe "
            f"ON pe.{quote(through.get_field('entitlement').column)} = e.{quote(Entitlement._meta.pk.column)} "
            f"WHERE pe.{quote(through.get_field('product').column)} = %s")


def _states_and_entitlements(subscriber_id: int | None, product_id: int | None) -> tuple[list[tuple], list[str]]:
    """One query (was two): the (status, expires_at, grace_until) of the subscriber's current
    subscriptions, and the sorted entitlement names of the product."""
    if subscriber_id is None and product_id is None:
        return [], []
    with connection.cursor() as cursor:
        cursor.execute(_states_and_entitlements_sql(), [subscriber_id, product_id])
        rows = cursor.fetchall()
    return [r[1:] for r in rows if r[0] == "s"], sorted(r[1] for r in rows if r[0] == "e")


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
                pipe.execute()
            except redis.RedisError as exc:
                Outbox.objects.filter(pk__in=[r.pk for r in rows]).update(
                    attempts=F("attempts") + 1, last_error=str(exc)[:1000])
                logger.warning("outbox relay: Redis unavailable (%s); %d events wait", exc, len(rows))
                return published
            Outbox.objects.filter(pk__in=[r.pk for r in rows]).update(published_at=timezone.now(), last_error="",
                                                                     attempts=F("attempts") + 1)
            published += len(rows)
        if ids is None:
            # Rows left for the periodic relay mean the after-commit work failed (Redis was down):
            # those users' cached entitlements may be stale too, so refresh them now.
            _refresh_caches({r.payload.get("userId") for r in rows} - {None})
        if len(rows) < limit:
            return published


def _refresh_caches(external_ids: set[str]) -> None:
    from accounts.models import Subscriber

    from . import entitlement_cache

    entitlement_cache.refresh_many(list(Subscriber.objects.filter(external_id__in=external_ids)
                                        .values_list("pk", flat=True)))


def publish_pending_after_commit(ids: list[int]) -> None:
    """on_commit hook: never let a relay failure surface in the write path (beat retries)."""
    try:
        publish_pending(ids=ids)
    except Exception:  # the beat relay picks these up; the write itself is committed
        logger.exception("outbox relay after commit failed; left for the periodic relay")
