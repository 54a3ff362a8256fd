"""Reads: the check answer and the subscription lists."""

from datetime import datetime

from django.db.models import Max, Q
from django.utils import timezone

from operations.metrics import CHECK_CACHE_HIT, CHECK_CACHE_MISS

from . import entitlement_cache
from .entries import entries_of
from .models import Subscription
from .snapshots import TransactionKind
from .statuses import Status, access_ends_at, grants_access, is_entitled, lapsed_status
from .times import isoformat_z


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- The check answer -------------------------------------------------------------------------

def entries_for_user(external_id: str) -> list[dict]:
    """One Redis GET when cached; else the database (and the cache is filled for the next reader)."""
    cached = entitlement_cache.get_for_check(external_id)  # None: a miss, unreadable, or Redis down
    if cached is not None:
        CHECK_CACHE_HIT.inc()
        return cached
    CHECK_CACHE_MISS.inc()
    entries = entries_of(Subscription.objects.filter(subscriber__external_id=external_id))
    entitlement_cache.fill(external_id, entries)
    return entries


def check_answer(external_id: str, *, entitlement: str | None = None, now: datetime | None = None) -> dict:
    """The check API's answer (ARCHITECTURE.md contract), computed at `now`.

    Subscribed if any subscription is entitled now (narrowed to those granting `entitlement` when given).
    The subscription shown is the entitled one whose access lasts longest (open-ended first); with none
    entitled, the newest one, its status as it stands now (an entitled status past its end reads EXPIRED,
    before the sweep writes it). No subscription at all: status INACTIVE, the rest null."""
    return answer_from_entries(str(external_id), entries_for_user(str(external_id)), entitlement=entitlement,
                               now=now or timezone.now())


def answer_from_entries(external_id: str, entries: list[dict], *, entitlement: str | None, now: datetime) -> dict:
    """check_answer() from a user's entries (the check API's fast path reads them itself)."""
    if entitlement is not None:
        entries = [e for e in entries if entitlement in e["entitlements"]]
    entitled = []
    for e in entries:
        expires_at, grace_until = _dt(e["expires_at"]), _dt(e["grace_until"])
        if is_entitled(e["status"], expires_at, grace_until, now):
            ends = access_ends_at(e["status"], expires_at, grace_until)
            entitled.append(((ends is None, ends or now), e))
    if entitled:
        shown = max(entitled, key=lambda pair: pair[0])[1]
        status = shown["status"]
    elif entries:
        shown = entries[0]
        status = lapsed_status(shown["status"]) if grants_access(shown["status"]) else shown["status"]
    else:
        shown, status = None, Status.INACTIVE.value
    if entitlement is not None:
        granted = [entitlement] if entitled else []
    else:
        granted = sorted({name for _, e in entitled for name in e["entitlements"]})
    return {
        "user_id": str(external_id),
        "is_subscribed": bool(entitled),
        "status": status,
        "provider": shown["provider"] if shown else None,
        "product_id": (shown["product_id"] or None) if shown else None,
        "expires_at": shown["expires_at"] if shown else None,
        "entitlements": granted,
        "as_of": isoformat_z(now),
        "last_confirmed_at": shown["last_verified_at"] if shown else None,
    }


# --- Subscription lists -----------------------------------------------------------------------

def _with_list_data(queryset):
    last_charge = Max("transactions__occurred_at", filter=Q(
        transactions__kind__in=(TransactionKind.PURCHASE, TransactionKind.RENEWAL)))
    return (queryset.select_related("product", "subscriber").prefetch_related("product__entitlements")
            .annotate(last_charge_at=last_charge))


def subscription_list(*, external_id: str, limit: int, offset: int) -> tuple[list[Subscription], bool]:
    """A user's subscriptions, newest first (superseded ones included: this is their history).
    Returns (page, has_more). An unknown user has none."""
    queryset = _with_list_data(Subscription.objects.filter(subscriber__external_id=str(external_id)))
    rows = list(queryset.order_by("-created_at", "-id")[offset:offset + limit + 1])
    return rows[:limit], len(rows) > limit


def subscription_get(*, subscription_id: int) -> Subscription | None:
    return _with_list_data(Subscription.objects.filter(pk=subscription_id)).first()


def subscription_effective_status(sub: Subscription, now: datetime) -> str:
    """The stored status as it stands now: an entitled status past its end reads EXPIRED."""
    if grants_access(sub.status) and not is_entitled(sub.status, sub.expires_at, sub.grace_until, now):
        return lapsed_status(sub.status)
    return sub.status
