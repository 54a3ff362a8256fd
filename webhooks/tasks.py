"""Celery tasks: thin wrappers over webhooks.services (acks_late, JSON, time limits: see settings)."""

from celery import shared_task

from . import services


@shared_task(name="webhooks.tasks.drain_events", acks_late=True, ignore_result=True)
def drain_events() -> int:
    """Process every due `received` event (scheduled by the webhook view through queue.kick_drain)."""
    return services.drain_run()


@shared_task(name="webhooks.tasks.process_event", acks_late=True, ignore_result=True)
def process_event(event_id: int) -> str:
    """One event whose retry is due."""
    return services.event_process(event_id)


@shared_task(name="webhooks.tasks.sweep_events", acks_late=True, ignore_result=True)
def sweep_events() -> int:
    """Beat: events still `received` (lost task, broker down) and due retries get a drain."""
    return services.events_sweep()
