"""Double payments: a customer paying for the same entitlement through two live paid subscriptions at
once (two stores, or twice in one store), kept as `DoublePayment` rows for staff (the admin queue,
billing/admin/double_payments.py) and told to the app by the verify API (`warnings_for`).

What counts as paying: a subscription entitled now whose status is ACTIVE, CANCELED (paid up to its
end, will not renew) or ON_GRACE, of a store (not a staff grant: provider `manual`), not superseded
(`replaced_by`); a TRIAL does not count. Two such subscriptions of one user make a double payment when
their products share an entitlement and they are in the same environment (a sandbox purchase beside a
production one is a tester, not a customer paying twice).

`detect(subscriber_ids)` brings the rows of those users in line with their subscriptions now: a new
pair opens, a pair that had ended by itself opens again, an open pair whose subscriptions no longer
both pay ends by itself (status `ended`, with which one stopped and why). Pairs staff resolved or
dismissed stay closed. It runs after commit of a write that changed a subscription's status, product,
owner or supersession (billing/after_commit.py: one query for the users of a transaction, off the
write's critical section), when the verify API applies a purchase, and daily over every user with two
paying subscriptions or an open row (`sweep`)."""

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from audit.records import record

from .models import DoublePayment, Product, Subscription
from .snapshots import Provider
from .statuses import Status, is_entitled

logger = logging.getLogger(__name__)

PAYING = frozenset({Status.ACTIVE, Status.CANCELED, Status.ON_GRACE})
# A change of one of these fields may start or end a double payment (apply.py watches them).
WATCHED_FIELDS = frozenset({"status", "product_id", "replaced_by_id", "subscriber_id", "environment"})
SWEEP_CHUNK = 1000

WRITE_PATH, VERIFICATION, SWEEP = "write path", "verification", "sweep"


def may_start_or_end(provider: str, changed: set[str], status_before: str, status_after: str) -> bool:
    """Whether a subscription's change can open or end a double payment (cheap: no query)."""
    return (provider != Provider.MANUAL and bool(changed & WATCHED_FIELDS)
            and (status_before in PAYING or status_after in PAYING))


@dataclass(frozen=True)
class _Paying:
    pk: int
    subscriber_id: int
    product_id: int | None
    environment: str
    started: datetime
    label: str


@dataclass
class Report:
    opened: int = 0
    ended: int = 0


def _paying(subscriber_ids: Iterable[int] | None, now: datetime) -> list[_Paying]:
    rows = (Subscription.objects.filter(status__in=PAYING, replaced_by__isnull=True, subscriber__isnull=False)
            .exclude(provider=Provider.MANUAL))
    if subscriber_ids is not None:
        rows = rows.filter(subscriber_id__in=list(subscriber_ids))
    return [_Paying(pk, subscriber_id, product_id, environment, started_at or created_at,
                    f"{provider}:{provider_subscription_id}")
            for (pk, subscriber_id, product_id, environment, provider, provider_subscription_id, started_at,
                 created_at, status, expires_at, grace_until) in rows.values_list(
                "pk", "subscriber_id", "product_id", "environment", "provider", "provider_subscription_id",
                "started_at", "created_at", "status", "expires_at", "grace_until")
            if is_entitled(status, expires_at, grace_until, now)]


def _pairs(paying: list[_Paying]) -> dict[tuple[int, int], tuple[int, list[str], datetime]]:
    """(first id, second id) → (subscriber id, shared entitlements, since) for every paying pair."""
    product_ids = {p.product_id for p in paying if p.product_id is not None}
    grants: dict[int, set[str]] = defaultdict(set)
    for product_id, name in (Product.entitlements.through.objects.filter(product_id__in=product_ids)
                             .values_list("product_id", "entitlement__name")):
        grants[product_id].add(name)
    by_user: dict[int, list[_Paying]] = defaultdict(list)
    for p in paying:
        by_user[p.subscriber_id].append(p)
    pairs = {}
    for subscriber_id, subs in by_user.items():
        for a, b in combinations(sorted(subs, key=lambda s: s.pk), 2):
            shared = grants[a.product_id] & grants[b.product_id] if a.product_id and b.product_id else set()
            if shared and a.environment == b.environment:
                pairs[(a.pk, b.pk)] = (subscriber_id, sorted(shared), max(a.started, b.started))
    return pairs


def detect(subscriber_ids: Iterable[int] | None, *, source: str) -> Report:
    """Bring the double payments of these users (None: every user) in line with their subscriptions now
    (module docstring). Idempotent; two runs at once are harmless (one row per pair, a unique constraint)."""
    if subscriber_ids is not None:
        subscriber_ids = sorted(set(subscriber_ids) - {None})
        if not subscriber_ids:
            return Report()
    now = timezone.now()
    pairs = _pairs(_paying(subscriber_ids, now))
    report = Report()
    with transaction.atomic():
        open_rows = DoublePayment.objects.select_for_update().filter(status=DoublePayment.Status.OPEN).order_by("pk")
        if subscriber_ids is not None:
            open_rows = open_rows.filter(subscriber_id__in=subscriber_ids)
        for row in open_rows:
            if (row.first_id, row.second_id) in pairs:
                continue
            row.status, row.closed_at = DoublePayment.Status.ENDED, now
            row.close_reason = _why_ended(row)
            row.save(update_fields=["status", "closed_at", "close_reason"])
            report.ended += 1
        if not pairs:
            return report
        known = {(r.first_id, r.second_id): r for r in DoublePayment.objects.select_for_update().filter(
            Q(first_id__in=[a for a, _ in pairs]) & Q(second_id__in=[b for _, b in pairs])).order_by("pk")}
        new = []
        for (first, second), (subscriber_id, shared, since) in pairs.items():
            row = known.get((first, second))
            if row is None:
                new.append(DoublePayment(subscriber_id=subscriber_id, first_id=first, second_id=second,
                                         entitlements=shared, since=since, detected_at=now, detected_by=source))
            elif row.status == DoublePayment.Status.ENDED:  # paying twice again
                row.status, row.since, row.detected_at, row.detected_by = DoublePayment.Status.OPEN, since, now, source
                row.closed_at, row.close_reason, row.entitlements = None, "", shared
                row.save(update_fields=["status", "since", "detected_at", "detected_by", "closed_at",
                                        "close_reason", "entitlements"])
                report.opened += 1
            elif row.status == DoublePayment.Status.OPEN and row.entitlements != shared:
                DoublePayment.objects.filter(pk=row.pk).update(entitlements=shared)
        DoublePayment.objects.bulk_create(new, ignore_conflicts=True)  # a concurrent detect: no error
        report.opened += len(new)
    if report.opened or report.ended:
        logger.info("double payments (%s): %d opened, %d ended", source, report.opened, report.ended)
    return report


def _why_ended(row: DoublePayment) -> str:
    now = timezone.now()
    stopped = []
    for sub in Subscription.objects.filter(pk__in=[row.first_id, row.second_id]):
        if sub.replaced_by_id is not None:
            stopped.append(f"subscription {sub.pk} ({sub}) was replaced by {sub.replaced_by_id}")
        elif sub.status not in PAYING or not is_entitled(sub.status, sub.expires_at, sub.grace_until, now):
            stopped.append(f"subscription {sub.pk} ({sub}) is {sub.status}"
                           + ("" if sub.status not in PAYING else " and past its end"))
    return "; ".join(stopped) or "the two no longer share an entitlement or an owner"


def detect_after_commit(subscriber_ids: list[int]) -> None:
    """billing/after_commit.py's hook: never let the check surface in the write path (the sweep retries)."""
    try:
        detect(subscriber_ids, source=WRITE_PATH)
    except Exception:  # committed already; the daily sweep finds what this missed
        logger.exception("double payment check after commit failed; left for the daily sweep")


def sweep() -> Report:
    """Every user with two paying subscriptions or an open double payment, in chunks (the daily beat job)."""
    candidates = set(Subscription.objects.filter(status__in=PAYING, replaced_by__isnull=True,
                                                 subscriber__isnull=False)
                     .exclude(provider=Provider.MANUAL).values("subscriber_id")
                     .annotate(n=Count("id")).filter(n__gte=2).values_list("subscriber_id", flat=True))
    candidates |= set(DoublePayment.objects.filter(status=DoublePayment.Status.OPEN)
                      .values_list("subscriber_id", flat=True))
    ordered, report = sorted(candidates), Report()
    for start in range(0, len(ordered), SWEEP_CHUNK):
        part = detect(ordered[start:start + SWEEP_CHUNK], source=SWEEP)
        report.opened, report.ended = report.opened + part.opened, report.ended + part.ended
    return report


# --- the verify API's warning ----------------------------------------------------------------------

def warnings_for(subscription_id: int) -> list[dict]:
    """The verify API's `warnings`: one `double_payment` entry per open double payment the subscription
    just applied is part of (detected here if the after-commit check has not run yet)."""
    subscriber_id = Subscription.objects.filter(pk=subscription_id).values_list("subscriber_id", flat=True).first()
    if subscriber_id is None:
        return []
    detect([subscriber_id], source=VERIFICATION)
    warnings = []
    for row in (DoublePayment.objects.filter(Q(first_id=subscription_id) | Q(second_id=subscription_id),
                                             status=DoublePayment.Status.OPEN)
                .select_related("first", "second").order_by("pk")):
        other = row.second if row.first_id == subscription_id else row.first
        warnings.append({
            "code": "double_payment",
            "message": (f"The user already pays for {', '.join(row.entitlements)} through another subscription "
                        f"({_where(other)}). Suggest cancelling one of them in its store."),
            "entitlements": row.entitlements,
            "subscriptions": [_public(row.first), _public(row.second)],
        })
    return warnings


def _where(sub: Subscription) -> str:
    return {Provider.APPLE: "the App Store", Provider.GOOGLE: "Google Play", Provider.STRIPE: "the web (Stripe)",
            Provider.XSOLLA: "the web shop (Xsolla)"}.get(sub.provider, sub.provider)


def _public(sub: Subscription) -> dict:
    return {"id": str(sub.pk), "provider": sub.provider, "provider_subscription_id": sub.provider_subscription_id,
            "product_id": sub.store_product_id or None, "status": sub.status}


# --- staff: resolve or dismiss -------------------------------------------------------------------

class CannotClose(ValueError):
    """Only an open double payment can be resolved or dismissed; the message says why not."""


def double_payment_close(*, double_payment: DoublePayment, outcome: str, reason: str, staff_user) -> DoublePayment:
    """Staff close an open double payment: `resolved` (one of them was refunded or cancelled at the
    store) or `dismissed` (not a problem: e.g. a family plan). The reason and who are kept on the row
    and in the audit log, in one transaction."""
    if outcome not in (DoublePayment.Status.RESOLVED, DoublePayment.Status.DISMISSED):
        raise ValueError(f"unknown outcome {outcome!r}")
    reason = (reason or "").strip()
    if not reason:
        raise CannotClose("A reason is required.")
    with transaction.atomic():
        row = DoublePayment.objects.select_for_update().get(pk=double_payment.pk)
        if row.status != DoublePayment.Status.OPEN:
            raise CannotClose(f"it is {row.get_status_display()} already")
        row.status, row.closed_at, row.closed_by, row.close_reason = outcome, timezone.now(), staff_user, reason
        row.save(update_fields=["status", "closed_at", "closed_by", "close_reason"])
        record(actor=staff_user, action=f"double_payment_{'resolve' if outcome == 'resolved' else 'dismiss'}",
               reason=reason, subscriber=row.subscriber, subscription_id=row.second_id,
               target=f"billing.doublepayment:{row.pk}",
               details={"status": {"before": "open", "after": outcome},
                        "subscriptions": [row.first_id, row.second_id], "entitlements": row.entitlements})
    return row
