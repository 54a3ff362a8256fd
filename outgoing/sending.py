"""One attempt at one delivery: claim it, POST the event signed, record the answer, then delivered,
a retry planned with exponential backoff, or `dead` once it has failed for the whole horizon
(OUTGOING_WEBHOOK_RETRY_HORIZON_HOURS, 3 days by default, as Stripe).

A claim is an UPDATE conditioned on the attempt count the task was given, so two tasks for the same
delivery (a beat run re-enqueued it while a worker was busy) never both send. The HTTP call runs
outside any database transaction, bounded by the connect and read timeouts."""

import json
import logging
import secrets
import time
from datetime import timedelta

import requests
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from .models import Attempt, Delivery
from .signing import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

Status = Delivery.Status
BODY_KEPT = 2000  # characters of an answer kept on the attempt
# While an attempt runs its delivery is not due: a worker that dies mid-send is retried after this.
LEASE = timedelta(minutes=5)
_random = secrets.SystemRandom()


def backoff_seconds(attempt: int) -> float:
    """Exponential with "equal jitter" (half fixed, half random), capped; endpoints that fail together
    are not all retried in the same second."""
    ceiling = min(settings.OUTGOING_WEBHOOK_RETRY_MAX_SECONDS,
                  settings.OUTGOING_WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return ceiling / 2 + _random.uniform(0, ceiling / 2)


def delivery_claim(delivery_id: int, attempts: int) -> Delivery | None:
    """Take the delivery for attempt `attempts + 1`, or None (someone else took it, or it is done)."""
    now = timezone.now()
    taken = Delivery.objects.filter(pk=delivery_id, attempts=attempts, status=Status.PENDING).update(
        attempts=F("attempts") + 1, next_attempt_at=now + LEASE)
    if not taken:
        return None
    return Delivery.objects.select_related("endpoint", "event").get(pk=delivery_id)


def delivery_send(delivery_id: int, attempts: int) -> Attempt | None:
    """One attempt (a task's whole work). Returns the recorded attempt, None when not claimed."""
    delivery = delivery_claim(delivery_id, attempts)
    if delivery is None:
        return None
    endpoint = delivery.endpoint
    body = json.dumps(delivery.event.payload, separators=(",", ":")).encode()
    started = timezone.now()
    headers = {"Content-Type": "application/json", "User-Agent": "billing-service-webhooks/1",
               "X-Billing-Event-Id": str(delivery.event.event_id),
               "X-Billing-Delivery-Attempt": str(delivery.attempts),
               SIGNATURE_HEADER: signature_header(endpoint.secret, body, int(time.time()))}
    clock = time.monotonic()
    status_code, answer, error = None, "", ""
    try:
        with requests.post(endpoint.url, data=body, headers=headers, allow_redirects=False, stream=True,
                           timeout=(settings.OUTGOING_WEBHOOK_CONNECT_TIMEOUT_SECONDS,
                                    settings.OUTGOING_WEBHOOK_READ_TIMEOUT_SECONDS)) as response:
            status_code = response.status_code
            answer = _first_bytes(response)
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    duration_ms = int((time.monotonic() - clock) * 1000)
    ok = status_code is not None and 200 <= status_code < 300
    if not ok and not error:
        error = f"HTTP {status_code}"
    attempt = Attempt.objects.create(delivery=delivery, number=delivery.attempts, started_at=started,
                                     duration_ms=duration_ms, status_code=status_code, response_body=answer,
                                     error=error, ok=ok)
    _outcome(delivery, ok, error)
    return attempt


def _first_bytes(response: requests.Response) -> str:
    """What an operator needs to see of an answer, never a whole (possibly huge) page."""
    raw = response.raw.read(BODY_KEPT, decode_content=True) or b""
    return raw.decode("utf-8", "replace")[:BODY_KEPT]


def _outcome(delivery: Delivery, ok: bool, error: str) -> None:
    now = timezone.now()
    if ok:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = Status.DELIVERED, now, None
        delivery.failing_since, delivery.last_error = None, ""
    else:
        delivery.last_error = error
        delivery.failing_since = delivery.failing_since or now
        give_up_at = delivery.failing_since + timedelta(hours=settings.OUTGOING_WEBHOOK_RETRY_HORIZON_HOURS)
        if now >= give_up_at:
            delivery.status, delivery.next_attempt_at = Status.DEAD, None
            logger.error("outgoing webhook %s to %s is dead after %s attempts: %s", delivery.event.event_id,
                         delivery.endpoint.url, delivery.attempts, error)
        else:
            retry_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
            delivery.next_attempt_at = min(retry_at, give_up_at)  # the last try falls on the horizon
            logger.warning("outgoing webhook %s to %s failed (attempt %s: %s); retry at %s",
                           delivery.event.event_id, delivery.endpoint.url, delivery.attempts, error,
                           delivery.next_attempt_at)
    delivery.save(update_fields=["status", "delivered_at", "next_attempt_at", "failing_since", "last_error"])
