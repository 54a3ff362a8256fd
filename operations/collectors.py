"""Gauges computed when /metrics is scraped, from the database and Redis (what no process counts as it
happens): the outbox backlog, Google purchases awaiting acknowledgement, live subscriptions, each
store's API budget used, the last success of every beat job. A few indexed queries per scrape; a
failing source is reported by `billing_metrics_source_up` instead of failing the whole scrape."""

import logging

import redis
from django.db import DatabaseError
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from billing import store_budgets
from billing.models import Outbox, Subscription
from billing.providers.google.selectors import subscriptions_awaiting_acknowledgement
from billing.statuses import Status

from . import job_runs

logger = logging.getLogger(__name__)

# Ended for good: not "live" (they stay in the table for the history).
_ENDED = (Status.EXPIRED, Status.REVOKED)


def outbox() -> list:
    now = timezone.now()
    row = Outbox.objects.filter(published_at__isnull=True).aggregate(rows=Count("id"), oldest=Min("created_at"))
    backlog = GaugeMetricFamily("billing_outbox_backlog", "Outbox rows not yet published to the event stream")
    backlog.add_metric([], row["rows"])
    age = GaugeMetricFamily("billing_outbox_oldest_age_seconds",
                            "Age of the oldest unpublished outbox row (0 when none is waiting)")
    age.add_metric([], max((now - row["oldest"]).total_seconds(), 0.0) if row["oldest"] else 0.0)
    return [backlog, age]


def google_acknowledgements() -> list:
    now = timezone.now()
    row = subscriptions_awaiting_acknowledgement().order_by().aggregate(
        linked=Count("id", filter=Q(subscriber__isnull=False)), orphans=Count("id", filter=Q(subscriber__isnull=True)),
        nearest=Min("acknowledgement_due_at"))
    pending = GaugeMetricFamily("billing_google_acknowledgements_pending",
                                "Google purchases not acknowledged yet (overdue ones for a day after their "
                                "deadline); linked=false: no user yet, waits for support", labels=["linked"])
    pending.add_metric(["true"], row["linked"])
    pending.add_metric(["false"], row["orphans"])
    nearest = row["nearest"]
    deadline = GaugeMetricFamily("billing_google_acknowledgement_deadline_seconds",
                                 "Seconds until the nearest acknowledgement deadline (negative: overdue; "
                                 "absent when none is pending)")
    if nearest is not None:
        deadline.add_metric([], (nearest - now).total_seconds())
    return [pending, deadline]


def live_subscriptions() -> list:
    rows = (Subscription.objects.exclude(status__in=_ENDED).order_by()
            .values_list("provider", "status").annotate(n=Count("id")))
    family = GaugeMetricFamily("billing_subscriptions_live", "Subscriptions not ended (every status but "
                                                              "EXPIRED and REVOKED)", labels=["provider", "status"])
    for provider, status, n in rows:
        family.add_metric([provider, status], n)
    return [family]


def store_budgets_used() -> list:
    """Each store's API budget (billing/store_budgets.py): calls in the last 60 s and the last 24 h."""
    family = GaugeMetricFamily("billing_store_api_budget_used_ratio",
                               "Share of our own store API budget spent (share: minute = last 60 s, day = last 24 h)",
                               labels=["store", "share"])
    calls = GaugeMetricFamily("billing_store_api_budget_used_calls",
                              "Store API calls counted against our budget in the window", labels=["store", "share"])
    limit = GaugeMetricFamily("billing_store_api_budget_limit_calls", "Our store API budget for the window",
                              labels=["store", "share"])
    for store, windows in store_budgets.usage().items():
        for share in ("minute", "day"):
            used, cap = windows[share]["used"], windows[share]["limit"]
            if used is None or not cap:
                continue
            family.add_metric([store, share], used / cap)
            calls.add_metric([store, share], used)
            limit.add_metric([store, share], cap)
    return [family, calls, limit]


def beat_jobs() -> list:
    family = GaugeMetricFamily("billing_beat_job_last_success_timestamp_seconds",
                               "When each beat job last succeeded (Unix time; alert on its age)", labels=["task"])
    for task, at in sorted(job_runs.last_successes().items()):
        family.add_metric([task], at.timestamp())
    return [family]


SOURCES = {"outbox": outbox, "google_acknowledgements": google_acknowledgements,
           "live_subscriptions": live_subscriptions, "store_budgets": store_budgets_used, "beat_jobs": beat_jobs}


class ScrapeTimeCollector:
    """prometheus-client's custom collector protocol: `collect()` runs on every scrape."""

    def collect(self):
        up = GaugeMetricFamily("billing_metrics_source_up", "1 when a scrape-time source answered, else 0",
                               labels=["source"])
        for name, source in SOURCES.items():
            try:
                families = source()
            except (DatabaseError, redis.RedisError) as exc:
                logger.warning("metrics source %s failed: %s", name, exc)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up
