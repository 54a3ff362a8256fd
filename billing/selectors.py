"""Reads: the check answer and the subscription lists."""

from datetime import datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import entitlement_cache
from .models import Subscription
from .statuses import is_entitled


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def subscriber_entries(subscriber_id: int) -> list[dict]:
    """What the check answer is computed from, for one subscriber: newest first, superseded ones left out."""
    subs = (Subscription.objects.filter(subscriber_id=subscriber_id, replaced_by__isnull=True)
            .select_related("product").prefetch_related("product__entitlements").order_by("-created_at", "-id"))
    return [{
        "id": s.pk,
        "provider": s.provider,
        "product_id": s.store_product_id,
        "status": s.status,
        "expires_at": _iso(s.expires_at),
        "grace_until": _iso(s.grace_until),
        "entitlements": sorted(e.name for e in s.product.entitlements.all()) if s.product else [],
        "environment": s.environment,
        "last_verified_at": _iso(s.last_verified_at),
    } for s in subs]


def entries_for_user(external_id: str) -> list[dict]:
    cached = entitlement_cache.get(external_id)
    if cached is not None:
        return cached
    from accounts.models import Subscriber

    subscriber_id = Subscriber.objects.filter(external_id=external_id).values_list("pk", flat=True).first()
    entries = [] if subscriber_id is None else subscriber_entries(subscriber_id)
    entitlement_cache.fill(external_id, entries)
    return entries


def _entitled(entry: dict, now: datetime) -> bool:
    return is_entitled(entry["status"], parse_datetime(entry["expires_at"]) if entry["expires_at"] else None,
                       parse_datetime(entry["grace_until"]) if entry["grace_until"] else None, now)


def check_answer(external_id: str, *, entitlement: str | None = None, now: datetime | None = None) -> dict:
    """The check API's answer (ARCHITECTURE.md contract). Subscribed if any entitled subscription
    (narrowed to those granting `entitlement` when given); the entitled one that lasts longest is shown."""
    now = now or timezone.now()
    entries = entries_for_user(external_id)
    if entitlement is not None:
        entries = [e for e in entries if entitlement in e["entitlements"]]
    entitled = [e for e in entries if _entitled(e, now)]
    # Show the entitled subscription lasting longest (open-ended first); else the newest one.
    if entitled:
        shown = max(entitled, key=lambda e: (e["expires_at"] is None, e["expires_at"] or "", e["grace_until"] or ""))
    else:
        shown = entries[0] if entries else None
    granted = sorted({name for e in entitled for name in e["entitlements"]})
    verified = [e["last_verified_at"] for e in entries if e["last_verified_at"]]
    return {
        "user_id": str(external_id),
        "is_subscribed": bool(entitled),
        "status": shown["status"] if shown else None,
        "provider": shown["provider"] if shown else None,
        "product_id": shown["product_id"] if shown else None,
        "expires_at": shown["expires_at"] if shown else None,
        "entitlements": granted,
        "as_of": _iso(now),
        "last_confirmed_at": max(verified) if verified else None,
    }
