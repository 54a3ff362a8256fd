"""The admin index's "Needs attention" box: what an operator must look at, as rows (what, how many,
where to look). `needs_attention()` is the one function the box is fed by; a later source
(reconciliation drifts, double payments) is one more function in SOURCES returning rows. This module
sits in `webhooks` because it is the top of the import chain: it may read every app."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from billing.drift import open_drift_counts
from billing.models import Product, Subscription
from billing.providers.common import store_adapters
from billing.providers.google import selectors as google_selectors
from billing.snapshots import Provider

from .models import WebhookEvent

Status = WebhookEvent.Status


@dataclass(frozen=True)
class Row:
    label: str
    count: int
    url: str  # the admin list showing exactly these
    hint: str = ""  # what to do about them


def _events_url(**filters) -> str:
    return reverse("admin:webhooks_webhookevent_changelist") + "?" + urlencode(filters)


def webhook_rows() -> list[Row]:
    """Dead and failed events (all of them: they stay until replayed), and events still retrying after
    their WEBHOOK_MAX_ATTEMPTS (a store down or our key refused for hours: worth a look before the
    horizon makes them dead). One query, over the (status, received_at) index: never the whole table."""
    retrying = Q(status=Status.RECEIVED, attempts__gte=settings.WEBHOOK_MAX_ATTEMPTS)
    open_events = WebhookEvent.objects.filter(status__in=[Status.DEAD, Status.FAILED, Status.RECEIVED])  # indexed
    counts = open_events.aggregate(
        dead=Count("id", filter=Q(status=Status.DEAD)), failed=Count("id", filter=Q(status=Status.FAILED)),
        retrying=Count("id", filter=retrying))
    return [
        Row("Dead webhook events", counts["dead"], _events_url(status__exact=Status.DEAD),
            "retried until the horizon and never processed: fix the cause, then replay them"),
        Row("Failed webhook events", counts["failed"], _events_url(status__exact=Status.FAILED),
            "refused for good (a bug or unusable data): read the error, fix, then replay"),
        Row("Webhook events still retrying", counts["retrying"],
            _events_url(status__exact=Status.RECEIVED, attempts__gte=settings.WEBHOOK_MAX_ATTEMPTS),
            f"failed {settings.WEBHOOK_MAX_ATTEMPTS}+ times: a store down, a key refused, a setting missing"),
    ]


def _changelist(model, **filters) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") + "?" + urlencode(filters)


def google_acknowledgement_rows() -> list[Row]:
    """Google purchases not acknowledged yet whose deadline is within a day (or passed within the last
    day): Google refunds them at the deadline. Linked to the subscriptions list's Google acknowledgement
    filter, which selects exactly these (billing/providers/google/admin.py); only when Google is on."""
    if dict(store_adapters()).get(Provider.GOOGLE) is None:
        return []
    due = google_selectors.subscriptions_awaiting_acknowledgement(due_within=timedelta(hours=24)).count()
    return [Row("Google acknowledgements due within a day", due, _changelist(Subscription, google_ack="24h"),
                "Google refunds a purchase not acknowledged 3 days after it; orphans wait for a user: link them")]


def orphan_rows() -> list[Row]:
    """Subscriptions without a user (the store named nobody we know): kept, waiting for support to link."""
    orphans = Subscription.objects.filter(subscriber__isnull=True).count()  # the by-subscriber index holds NULLs
    return [Row("Subscriptions without a user (orphans)", orphans, _changelist(Subscription, orphan="yes"),
                "find the customer (search by e-mail or store id), then the action 'Link to a user'")]


def unmapped_product_rows() -> list[Row]:
    """Store products nobody mapped to entitlements: their buyers pay and get nothing."""
    unmapped = Product.objects.filter(entitlements__isnull=True).count()
    return [Row("Products that grant nothing (unmapped)", unmapped, _changelist(Product, mapping="unmapped"),
                "their subscribers get no entitlements: choose what each grants")]


def drift_rows() -> list[Row]:
    """Undismissed drifts (billing/drift.py: a store read found what no delivered event told us) of the
    last day and week: a store whose webhooks stopped arriving shows here first."""
    now = timezone.now()
    day, week = open_drift_counts(now)

    def url(since) -> str:
        return reverse("admin:billing_drift_changelist") + "?" + urlencode(
            {"state": "open", "found_at__gte": since.isoformat(timespec="seconds")})

    return [
        Row("Drifts found in the last day", day, url(now - timedelta(days=1)),
            "our state differed from the store's: check that store's webhook deliveries, then dismiss"),
        Row("Drifts found in the last week", week, url(now - timedelta(days=7)),
            "open drifts per day and store are counted above the list"),
    ]


SOURCES: list[Callable[[], list[Row]]] = [webhook_rows, google_acknowledgement_rows, orphan_rows,
                                          unmapped_product_rows, drift_rows]


def needs_attention() -> list[Row]:
    """Every source's rows that count something, in SOURCES order."""
    return [row for source in SOURCES for row in source() if row.count]
