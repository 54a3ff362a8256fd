"""Reads of the webhook pipeline (admin index figures, stuck events)."""

from collections import defaultdict
from datetime import timedelta

import redis
from django.db.models import Count
from django.utils import timezone

from billing.redis_client import get_redis

from .models import WebhookEvent


def rejections_last_day() -> dict[str, int]:
    """Rejected requests per provider over the last 24 hours (hourly Redis buckets)."""
    client = get_redis()
    if client is None:
        return {}
    now = timezone.now()
    keys = [f"webhooks:rejected:{now - timedelta(hours=h):%Y%m%d%H}" for h in range(24)]
    totals: dict[str, int] = defaultdict(int)
    try:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        for bucket in pipe.execute():
            for field, count in bucket.items():
                totals[field.split("|", 1)[0]] += int(count)
    except redis.RedisError:
        return {}
    return dict(totals)


def event_counts_last_day() -> list[dict]:
    """Per provider, over the last 24 hours: events received (all that arrived), still waiting,
    processed, ignored, failed, dead; and requests rejected before storing."""
    since = timezone.now() - timedelta(days=1)
    rows = (WebhookEvent.objects.filter(received_at__gte=since).values("provider", "status")
            .annotate(n=Count("id")).order_by())
    statuses = [s.value for s in WebhookEvent.Status]
    # Per provider: each status's count, and the total under its own key (the status `received`, still
    # waiting, is not the same figure as everything received).
    table: dict[str, dict] = {}
    for row in rows:
        entry = table.setdefault(row["provider"], {"total": 0, **dict.fromkeys(statuses, 0)})
        entry[row["status"]] += row["n"]
        entry["total"] += row["n"]
    for provider, count in rejections_last_day().items():
        table.setdefault(provider, {"total": 0, **dict.fromkeys(statuses, 0)})["rejected"] = count
    return [
        {"provider": provider, "received": values["total"], "waiting": values[WebhookEvent.Status.RECEIVED.value],
         "processed": values["processed"], "ignored": values["ignored"], "failed": values["failed"],
         "dead": values["dead"], "rejected": values.get("rejected", 0)}
        for provider, values in sorted(table.items())]
