"""Celery tasks of the Stripe package: thin, and the mirror has its own task so that dj-stripe
failing (a Stripe outage, a shape it does not know) never holds back the unified state."""

import logging

from celery import shared_task

from billing.providers.base import TransientError

from .services import event_mirror

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=5, acks_late=True, ignore_result=True)
def mirror_event(self, event: dict) -> None:
    # Takes the verified event body (Stripe keeps events only 30 days: a replay could not re-fetch it).
    try:
        event_mirror(event=event)
    except TransientError as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=30 * 2 ** self.request.retries) from exc
        logger.exception("dj-stripe mirror of %s failed", event.get("id"))
    except Exception:
        logger.exception("dj-stripe mirror of %s failed", event.get("id"))
