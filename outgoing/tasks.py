"""Celery tasks of the outgoing webhooks: the beat job and one task per delivery attempt. Thin: the
work is in dispatch.py and sending.py."""

from celery import shared_task

from . import dispatch, sending


@shared_task(ignore_result=True)
def dispatch_deliveries() -> int:
    """Beat: fan out new status changes and enqueue every delivery that is due (new or a retry)."""
    return dispatch.deliveries_dispatch()


@shared_task(ignore_result=True)
def send_delivery(delivery_id: int, attempts: int) -> None:
    """One POST to one endpoint; a failure plans the next attempt (no Celery retry: beat enqueues it)."""
    sending.delivery_send(delivery_id, attempts)
