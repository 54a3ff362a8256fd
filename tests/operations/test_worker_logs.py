"""A real Celery worker's lines (docs/operations.md "Logs"): JSON, each line of a task with its task id,
and the webhook event's id while it is processed."""

import json

import pytest

from tests.webhooks.adapter import event_body
from tests.webhooks.helpers import post, wait_for
from webhooks.models import WebhookEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_workers_task_lines_carry_the_task_id_and_the_event_id(client, queued_tasks, start_worker):
    worker = start_worker(LOG_LEVEL="INFO")
    assert post(client, event_body("evt_log1", type="flaky", fail_times=1, subscription_id="sub_L1")).status_code == 200
    event = wait_for(lambda: WebhookEvent.objects.filter(dedupe_key="evt_log1", status="processed").first(),
                     timeout=60, message="the event processed by the worker")

    def read_lines():
        return [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]

    retry = next(line for line in read_lines() if line["logger"] == "webhooks.retries")
    assert retry["event_id"] == event.pk and "retry in" in retry["message"]
    assert retry["task_id"] and retry["task_name"].startswith("webhooks.tasks.")
    # Celery's own line about that task names the same id (written when the task returns, a moment after
    # the row says processed).
    wait_for(lambda: any(line["logger"] == "celery.app.trace" and retry["task_id"] in line["message"]
                         for line in read_lines()), timeout=20, message="Celery's line about the task")
    lines = read_lines()
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
