"""Celery queues by urgency (docs/operations.md, "Queues"): every task lands on the queue of its
urgency, and only there, however it is published (delay, send_task by name as webhooks/queue.py
does, beat's schedule); a task nobody routed goes to `actions`, never to `webhooks` or `slow`."""

import pytest
from celery import current_app
from django.conf import settings

import billing.providers.google.tasks  # noqa: F401 (registers its tasks, as the worker's autodiscovery does)
import webhooks.tasks  # noqa: F401
from billing import tasks as billing_tasks
from billing.providers.google.tasks import acknowledge_due
from billing.providers.stripe.tasks import mirror_event
from webhooks import queue

QUEUES = ("webhooks", "actions", "slow")

EXPECTED = {
    "webhooks.tasks.drain_events": "webhooks",
    "webhooks.tasks.process_event": "webhooks",
    "webhooks.tasks.sweep_events": "webhooks",
    "billing.tasks.relay_outbox": "webhooks",
    "billing.tasks.forget_cached_entitlements": "webhooks",
    "billing.tasks.expire_lapsed": "actions",
    "billing.providers.google.tasks.acknowledge_due": "actions",
    "billing.providers.stripe.tasks.mirror_event": "slow",
    "billing.providers.stripe.tasks.mirror_events": "slow",
    "billing.tasks.repoll_subscriptions": "slow",
    "webhooks.tasks.recover_apple_notifications": "slow",
}


@pytest.fixture
def queued_tasks():
    """This process publishes to the broker (as a deployment does) instead of running tasks in-process."""
    previous = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False
    yield
    current_app.conf.task_always_eager = previous


def waiting(redis_client) -> dict[str, int]:
    """Messages waiting in each queue's Redis list (kombu's Redis transport: one list per queue)."""
    return {name: redis_client.llen(name) for name in QUEUES}


def queue_of(task_name: str) -> str:
    return current_app.amqp.router.route({}, task_name)["queue"].name


def test_every_task_of_the_project_is_routed_by_urgency():
    ours = {name for name in current_app.tasks if not name.startswith("celery.")}
    assert ours >= set(EXPECTED)
    assert {name: queue_of(name) for name in EXPECTED} == EXPECTED
    assert {queue_of(name) for name in ours} <= set(QUEUES)


def test_every_beat_job_goes_to_its_urgency():
    jobs = {key: queue_of(entry["task"]) for key, entry in settings.CELERY_BEAT_SCHEDULE.items()}
    assert jobs["webhooks-sweep"] == jobs["billing-relay-outbox"] == "webhooks"
    assert jobs["google-acknowledge-due"] == jobs["billing-expire-lapsed"] == "actions"
    assert jobs["billing-repoll-subscriptions"] == jobs["apple-recover-failed"] == "slow"


@pytest.mark.parametrize(("name", "expected"), [
    ("reconciliation.tasks.reconcile_store", "slow"),
    ("finance.tasks.export_transactions", "slow"),
    ("finance.tasks.metrics_rebuild", "slow"),
    ("outgoing.tasks.deliver", "actions"),
])
def test_tasks_of_later_work_are_routed_by_their_names(name, expected):
    assert queue_of(name) == expected


def test_a_drain_published_by_name_lands_on_the_webhooks_queue_only(queued_tasks, redis_client):
    assert queue.kick_drain() is True  # send_task, by the task's registered name
    assert waiting(redis_client) == {"webhooks": 1, "actions": 0, "slow": 0}
    assert queue.event_publish(1, countdown=0) is True
    assert waiting(redis_client) == {"webhooks": 2, "actions": 0, "slow": 0}


def test_a_slow_job_and_a_store_action_land_on_their_own_queues_only(queued_tasks, redis_client):
    billing_tasks.repoll_subscriptions.delay()
    assert waiting(redis_client) == {"webhooks": 0, "actions": 0, "slow": 1}
    acknowledge_due.delay()
    assert waiting(redis_client) == {"webhooks": 0, "actions": 1, "slow": 1}
    mirror_event.delay({"id": "evt_1"})  # the dj-stripe mirror: a copy, never before a webhook or a store action
    assert waiting(redis_client) == {"webhooks": 0, "actions": 1, "slow": 2}


def test_a_task_nobody_routed_goes_to_actions(queued_tasks, redis_client):
    current_app.send_task("someapp.tasks.something_new")
    assert waiting(redis_client) == {"webhooks": 0, "actions": 1, "slow": 0}
