"""An alert's life: opened (and announced) when its condition starts, reminded at most every
ALERT_REMINDER_HOURS while it holds, resolved (and, with ALERT_SEND_RESOLVED, announced) when it clears.

Safe with two runs at once (an accidental second beat): opening relies on the one-open-row-per-key
constraint, and every message is claimed first with a conditional UPDATE, so only one run sends it. A
message no channel took is un-claimed: the next run (minutes later) tries again."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ..models import Alert
from . import channels
from .conditions import CHECKS, Condition

logger = logging.getLogger(__name__)


@dataclass
class Report:
    opened: list[str] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    open: int = 0

    def as_dict(self) -> dict:
        return {"opened": self.opened, "reminded": self.reminded, "resolved": self.resolved, "open": self.open}


def conditions_now(now: datetime) -> tuple[dict[str, Condition], set[str]]:
    """Every check's conditions by key, and the key prefixes of the checks that failed (logged; their
    open alerts are kept as they are: a failing check says nothing about its conditions)."""
    found: dict[str, Condition] = {}
    failed: set[str] = set()
    for prefix, check in CHECKS.items():
        try:
            found.update((c.key, c) for c in check(now))
        except Exception:
            logger.exception("alert check %s failed", check.__name__)
            failed.add(prefix)
    return found, failed


def _message(kind: str, alert: Alert, now: datetime) -> tuple[str, str]:
    since = f"since {alert.started_at:%Y-%m-%d %H:%M} UTC"
    if kind == "resolved":
        return f"RESOLVED: {alert.summary}", f"Cleared at {now:%Y-%m-%d %H:%M} UTC ({since}).\n"
    title = "ALERT" if kind == "new" else "STILL FIRING"
    where = f"\nWhere: {alert.url}" if alert.url else ""
    return f"{title}: {alert.summary}", f"{alert.detail}{where}\nKey: {alert.key}, {since}.\n"


def _deliver(alert: Alert, kind: str, now: datetime, previous_sent_at: datetime | None) -> bool:
    """Send a claimed message; un-claim it when no channel took it."""
    delivered, errors = channels.send(*_message(kind, alert, now))
    if delivered:
        Alert.objects.filter(pk=alert.pk).update(sent_count=F("sent_count") + 1, last_send_error=errors)
    else:
        Alert.objects.filter(pk=alert.pk, last_sent_at=now).update(last_sent_at=previous_sent_at,
                                                                   last_send_error=errors)
    return delivered


def _open(condition: Condition, now: datetime) -> Alert | None:
    try:
        with transaction.atomic():
            return Alert.objects.create(key=condition.key, summary=condition.summary[:300], detail=condition.detail,
                                        count=condition.count, url=condition.url, started_at=now,
                                        last_seen_at=now, last_sent_at=now)
    except IntegrityError:  # another run opened it a moment ago: it announces it
        return None


def _still(alert: Alert, condition: Condition, now: datetime) -> bool:
    """Refresh what it says; claim a reminder when one is due (or the announcement never got through)."""
    Alert.objects.filter(pk=alert.pk).update(summary=condition.summary[:300], detail=condition.detail,
                                             count=condition.count, url=condition.url, last_seen_at=now)
    alert.summary, alert.detail, alert.count, alert.url = (condition.summary, condition.detail, condition.count,
                                                            condition.url)
    reminder = timedelta(hours=settings.ALERT_REMINDER_HOURS)
    due = alert.last_sent_at is None or (settings.ALERT_REMINDER_HOURS and now - alert.last_sent_at >= reminder)
    if not due:
        return False
    return bool(Alert.objects.filter(pk=alert.pk, last_sent_at=alert.last_sent_at).update(last_sent_at=now))


def alerts_check(now: datetime | None = None) -> Report:
    """One run of the alert job: compare what holds now with the open alerts, and send what is due."""
    now = now or timezone.now()
    report = Report()
    found, failed_checks = conditions_now(now)
    open_alerts = {alert.key: alert for alert in Alert.objects.filter(resolved_at__isnull=True)}
    for key, condition in found.items():
        alert = open_alerts.get(key)
        if alert is None:
            alert = _open(condition, now)
            if alert is not None and _deliver(alert, "new", now, None):
                report.opened.append(key)
            continue
        previous = alert.last_sent_at
        if _still(alert, condition, now):
            kind = "new" if alert.sent_count == 0 else "reminder"
            if _deliver(alert, kind, now, previous):
                (report.opened if kind == "new" else report.reminded).append(key)
    for key, alert in open_alerts.items():
        if key in found or key.split(":", 1)[0] in failed_checks:
            continue
        if Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(resolved_at=now, last_seen_at=now):
            report.resolved.append(key)
            if settings.ALERT_SEND_RESOLVED and alert.sent_count:
                channels.send(*_message("resolved", alert, now))
    report.open = Alert.objects.filter(resolved_at__isnull=True).count()
    return report
