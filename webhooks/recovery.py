"""Deliveries a store failed to make, recovered from its own notification history (the App Store
keeps one): each notification goes through the webhook's own path, authenticate → store once →
process, so one we already have is recognised by its dedupe key and not processed twice."""

import logging
from collections import Counter
from datetime import datetime

from billing.providers import registry
from billing.providers.base import Rejected, TransientError, Undecodable, VerifiedEvent

from . import bodies
from .ingest import event_store

logger = logging.getLogger(__name__)

RECOVERED_HEADER = "X-Recovered-By"
OUTCOMES = ("recovered", "already had", "rejected", "not verified (run again)", "empty")


def notification_ingest(*, provider: str, body: bytes | None, recovered_by: str) -> str:
    """One notification from the store's history, as if the store had POSTed it; returns its outcome."""
    if not body:
        return "empty"
    adapter = registry.get_adapter(provider)
    problem = ""
    try:
        verified = adapter.authenticate({}, body, {})
        verified, problem = bodies.storable(verified, body)  # what PostgreSQL refuses: stored failed
    except Undecodable as exc:  # authentic, unreadable: stored failed, as the webhook would have it
        verified, problem = VerifiedEvent(dedupe_key=bodies.body_key(body), event_type="", payload={}), exc.reason
    except Rejected as exc:
        logger.warning("%s: notification rejected (%s): %s", recovered_by, exc.code, exc.reason)
        return "rejected"
    except TransientError as exc:
        logger.warning("%s: notification not verified yet: %s", recovered_by, exc)
        return "not verified (run again)"
    event_id = event_store(provider=provider, verified=verified, body=body, headers={RECOVERED_HEADER: recovered_by},
                           problem=problem)
    return "recovered" if event_id is not None else "already had"


def missed_notifications_recover(*, provider: str, since: datetime, until: datetime, only_failures: bool,
                                 environment: str | None = None, recovered_by: str, counts: Counter | None = None,
                                 progress=None) -> Counter:
    """Ingest what the store's history holds for [since, until). Counts land in `counts` as they come,
    so a caller still has them when the store fails midway (StoreUnavailable, PermanentError,
    NotConfigured, ValueError for dates the store does not keep propagate)."""
    counts = Counter() if counts is None else counts
    adapter = registry.get_adapter(provider)
    for body in adapter.missed_notifications(since=since, until=until, only_failures=only_failures,
                                             environment=environment):
        counts[notification_ingest(provider=provider, body=body, recovered_by=recovered_by)] += 1
        if progress is not None:
            progress.update(1)
    return counts


def summary(counts: Counter) -> str:
    parts = [f"{counts[k]} {k}" for k in OUTCOMES if counts.get(k)]
    return f"{sum(counts.values())} notifications read: " + (", ".join(parts) or "none")
