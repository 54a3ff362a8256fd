"""Drift: the store's state of a subscription differs from ours in a way no delivered event told us.

Where it is found: in the one write path (billing/apply.py), for a snapshot whose Cause names the
store read that produced it (`Cause.found_by`: re-poll, reconciliation, verification, staff re-sync).
There, under the row lock, the write path holds both our state (as read with the lock) and the state
it is about to write (after its own rules: None keeps, a superseded subscription stays ended, a test
purchase stays without access), so the comparison costs no query and sees exactly what the store read
changes; the Drift rows are inserted with the batch's other rows (one INSERT). Webhook snapshots carry
no `found_by` (a delivered event is the telling), nor do our own changes (staff fixes, the expiry
sweep). A row the batch creates (a brand-new purchase being verified) is never a drift; a stale
snapshot changes nothing and so finds nothing.

Compared: status, access end (expires_at, grace_until), product, auto-renew, price. A field we held
empty that the store fills is not a disagreement (not recorded); a subscription whose access ended by
its dates, and that the store now calls ended, is not one either (the expiry sweep had not run yet)."""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from audit import records

from . import money
from .models import Drift, Subscription
from .statuses import access_ends_at, grants_access, lapsed_status

# Stores round times differently (Stripe seconds, Apple and Google milliseconds): closer is the same time.
SAME_TIME = timedelta(seconds=1)


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def _times_differ(ours: datetime | None, theirs: datetime | None) -> bool:
    if ours is None:
        return False  # we held nothing: the store filling it in is not a disagreement
    if theirs is None:
        return True
    return abs(ours - theirs) > SAME_TIME


def differences(ours: dict, sub: Subscription, now: datetime) -> dict:
    """{field: {"ours": text, "store": text}} between our state before (`ours`: the write path's state
    dict of the locked row) and the row as the store read is about to leave it (`sub`)."""
    found = {}
    if ours["status"] != sub.status and not _lapsed_by_dates(ours, sub.status, now):
        found["status"] = (ours["status"], sub.status)
    for name in ("expires_at", "grace_until"):
        if _times_differ(ours[name], getattr(sub, name)):
            found[name] = (ours[name], getattr(sub, name))
    if ours["store_product_id"] and ours["store_product_id"] != sub.store_product_id:
        found["product"] = (ours["store_product_id"], sub.store_product_id)
    if ours["auto_renew"] is not None and ours["auto_renew"] != sub.auto_renew:
        found["auto_renew"] = (ours["auto_renew"], sub.auto_renew)
    if ours["amount_minor"] is not None and (ours["amount_minor"], ours["currency"]) != (sub.amount_minor,
                                                                                            sub.currency):
        found["price"] = (money.format_minor(ours["amount_minor"], ours["currency"]),
                          money.format_minor(sub.amount_minor, sub.currency))
    return {name: {"ours": _text(a), "store": _text(b)} for name, (a, b) in found.items()}


def _lapsed_by_dates(ours: dict, store_status: str, now: datetime) -> bool:
    """Our row still says entitled, its access end has passed, and the store says it ended that way."""
    if not grants_access(ours["status"]) or store_status != lapsed_status(ours["status"]):
        return False
    ends = access_ends_at(ours["status"], ours["expires_at"], ours["grace_until"])
    return ends is not None and ends <= now


def drift_for(ours: dict, sub: Subscription, *, found_by: str, observed_at: datetime, now: datetime) -> Drift | None:
    """The Drift to record for this store read (unsaved), or None when it changes nothing we compare."""
    found = differences(ours, sub, now)
    if not found:
        return None
    return Drift(subscription=sub, provider=sub.provider, found_by=found_by, found_at=now, observed_at=observed_at,
                 differences=found)


# --- reads for the admin ---------------------------------------------------------------------------

def daily_counts(*, days: int = 14, now: datetime | None = None) -> tuple[list[str], list[dict]]:
    """Drifts found per day and store over the last `days` days (dismissed ones included: a dismissal
    says it was understood, not that the delivery arrived). Returns (stores, rows newest day first:
    {"day", "counts": [n per store], "total"}). One grouped query over the time index."""
    now = now or timezone.now()
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (Drift.objects.filter(found_at__gte=since).annotate(day=TruncDate("found_at"))
            .values("day", "provider").annotate(n=Count("id")).order_by())
    counts = {(r["day"], r["provider"]): r["n"] for r in rows}
    stores = sorted({provider for _, provider in counts})
    day_list = [(now - timedelta(days=i)).date() for i in range(days)]
    table = [{"day": day, "counts": [counts.get((day, s), 0) for s in stores],
              "total": sum(counts.get((day, s), 0) for s in stores)} for day in day_list]
    return stores, table


# --- staff ---------------------------------------------------------------------------------------------

class DriftDismissError(ValueError):
    """A dismissal that cannot be done as asked; the message says why."""


def drift_dismiss(*, drift: Drift, reason: str, staff_user) -> Drift:
    """Staff mark a drift understood (a known store outage, a test account): it leaves the "Needs
    attention" count; who, when and why are kept on it and in the audit log (one transaction)."""
    reason = (reason or "").strip()
    if not reason:
        raise DriftDismissError("A reason is required: say why this drift needs no more attention.")
    if staff_user is None or not getattr(staff_user, "pk", None):
        raise DriftDismissError("The staff member doing this is required.")
    with transaction.atomic():
        drift = Drift.objects.select_for_update().select_related("subscription").get(pk=drift.pk)
        if drift.dismissed_at is not None:
            raise DriftDismissError(f"already dismissed by {drift.dismissed_by} ({drift.dismiss_reason})")
        drift.dismissed_at, drift.dismissed_by, drift.dismiss_reason = timezone.now(), staff_user, reason
        drift.save(update_fields=["dismissed_at", "dismissed_by", "dismiss_reason"])
        sub = drift.subscription
        records.record(actor=staff_user, action="drift_dismiss", reason=reason, subscriber=sub.subscriber,
                       subscription_id=sub.pk, target=f"drift {drift.pk}",
                       details={"found_by": drift.found_by, "found_at": drift.found_at.isoformat(),
                                "differences": drift.differences})
    return drift


def open_drift_counts(now: datetime | None = None) -> tuple[int, int]:
    """Undismissed drifts found in the last day and in the last week (partial index on open drifts)."""
    now = now or timezone.now()
    week = Drift.objects.filter(dismissed_at__isnull=True, found_at__gte=now - timedelta(days=7))
    return (week.filter(found_at__gte=now - timedelta(days=1)).count(), week.count())
