"""The alert conditions: each function looks at the database now and returns the conditions that hold,
each with a stable key (the same problem keeps its key from one run to the next, so it is announced
once, then reminded). Every query is bounded by an index; none reads a whole table."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count
from django.urls import reverse

from billing.models import Outbox, Subscription
from billing.providers import registry
from billing.providers.google.selectors import subscriptions_awaiting_acknowledgement
from billing.statuses import ENTITLED_STATUSES
from webhooks.models import WebhookEvent

from .. import job_runs


@dataclass(frozen=True)
class Condition:
    key: str
    summary: str  # one line: the message's title and the Needs attention row
    detail: str = ""  # what to do about it
    count: int = 1
    url: str = ""  # the admin page to act from


def _admin(name: str, **filters) -> str:
    url = reverse(f"admin:{name}_changelist")
    return url + "?" + urlencode(filters) if filters else url


def _ago(now: datetime, then: datetime) -> str:
    hours = (now - then).total_seconds() / 3600
    return f"{hours * 60:.0f} min" if hours < 2 else f"{hours:.1f} h"


def dead_webhook_events(now: datetime) -> list[Condition]:
    """Events retried to the horizon and never processed, one condition per store."""
    counts = (WebhookEvent.objects.filter(status=WebhookEvent.Status.DEAD)  # the (status, received_at) index
              .values_list("provider").annotate(count=Count("id")).order_by("provider"))
    return [Condition(
        key=f"webhooks.dead:{provider}",
        summary=f"{count} dead {provider} webhook event(s)",
        detail="Retried until the horizon and never processed: fix the cause, then replay them from the admin.",
        count=count, url=_admin("webhooks_webhookevent", status__exact="dead", provider__exact=provider),
    ) for provider, count in counts]


def google_acknowledgements_due(now: datetime) -> list[Condition]:
    """Google refunds a purchase not acknowledged within 3 days: those due within ALERT_GOOGLE_ACK_DUE_HOURS
    (and those overdue by up to a day) still unacknowledged."""
    due = subscriptions_awaiting_acknowledgement(due_within=timedelta(hours=settings.ALERT_GOOGLE_ACK_DUE_HOURS))
    count = due.count()
    if not count:
        return []
    nearest = due.values_list("acknowledgement_due_at", flat=True).first()
    when = f"overdue since {nearest:%Y-%m-%d %H:%M} UTC" if nearest <= now else f"due {nearest:%Y-%m-%d %H:%M} UTC"
    return [Condition(
        key="google.acknowledgement_due",
        summary=f"{count} Google purchase(s) unacknowledged, the nearest {when}",
        detail="Google refunds a purchase not acknowledged within 3 days. An orphan waits for a user to be linked; "
               "otherwise look at the acknowledge_due job and Google Play's credentials.",
        count=count, url=_admin("billing_subscription", provider__exact="google"),
    )]


def outbox_backlog(now: datetime) -> list[Condition]:
    """Status changes not published to the stream for ALERT_OUTBOX_BACKLOG_MINUTES (Redis down, relay stopped)."""
    cutoff = now - timedelta(minutes=settings.ALERT_OUTBOX_BACKLOG_MINUTES)
    waiting = Outbox.objects.filter(published_at__isnull=True)  # the partial index
    oldest = waiting.order_by("id").values_list("created_at", flat=True).first()
    if oldest is None or oldest > cutoff:
        return []
    count = waiting.count()
    return [Condition(
        key="outbox.backlog",
        summary=f"{count} status change(s) not published to the stream, the oldest for {_ago(now, oldest)}",
        detail="Consumers are not told of these changes: look at the outbox's last_error (usually Redis) and "
               "the relay_outbox beat job.",
        count=count, url=_admin("billing_outbox"),
    )]


def overdue_beat_jobs(now: datetime) -> list[Condition]:
    """Beat jobs that have not succeeded in twice their interval (beat stopped, the job failing)."""
    conditions = []
    for job, run in job_runs.overdue_jobs(now):
        last = f"last succeeded {_ago(now, run.last_succeeded_at)} ago" if run.last_succeeded_at else "never succeeded"
        failing = f"; last error: {run.last_error}" if run.last_error and run.last_failed_at else ""
        conditions.append(Condition(
            key=f"beat.overdue:{job.name}",
            summary=f"Beat job {job.name} ({job.task}) {last}, runs every {job.interval}",
            detail=f"Is exactly one beat running, and a worker?{failing}",
            url=_admin("operations_jobrun"),
        ))
    return conditions


def silent_stores(now: datetime) -> list[Condition]:
    """A store that sent no webhook for ALERT_WEBHOOK_SILENCE_HOURS while it has live subscriptions:
    its webhook URL or credentials changed at the store, or a proxy drops them (0: off)."""
    hours = settings.ALERT_WEBHOOK_SILENCE_HOURS
    if not hours:
        return []
    conditions = []
    for provider in registry.store_names():
        live = Subscription.objects.filter(provider=provider, status__in=list(ENTITLED_STATUSES))
        if not live.exists():
            continue
        last = (WebhookEvent.objects.filter(provider=provider).order_by("-received_at")
                .values_list("received_at", flat=True).first())
        if last is not None and now - last < timedelta(hours=hours):
            continue
        since = f"none for {_ago(now, last)}" if last else "none ever received"
        conditions.append(Condition(
            key=f"webhooks.silent:{provider}",
            summary=f"No {provider} webhooks ({since}) while {live.count()} {provider} subscription(s) are live",
            detail="Check the webhook URL and its credentials in the store's console, and the proxy in front.",
            url=_admin("webhooks_webhookevent", provider__exact=provider),
        ))
    return conditions


# Key prefix → the check whose conditions' keys start with it (a check that fails keeps its open alerts).
CHECKS: dict[str, Callable[[datetime], list[Condition]]] = {
    "webhooks.dead": dead_webhook_events,
    "google.acknowledgement_due": google_acknowledgements_due,
    "outbox.backlog": outbox_backlog,
    "beat.overdue": overdue_beat_jobs,
    "webhooks.silent": silent_stores,
}
