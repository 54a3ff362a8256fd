"""The pipeline with real processes: a live server under concurrent deliveries, a Celery worker that
retries, is killed mid-task and restarted, a broker that is down, a database that is down."""

import threading
import time

import pytest
import requests
from django.db import connection

from billing.models import StatusChange, Subscription
from billing.statuses import Status
from tests.helpers import closed_port, stream_events
from webhooks import ingest, processing, tasks
from webhooks.models import WebhookEvent

from .adapter import SIGNATURE_HEADER, HookTestAdapter, event_body, sign
from .helpers import http_post, post, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

def _status(dedupe_key: str) -> str | None:
    return WebhookEvent.objects.filter(dedupe_key=dedupe_key).values_list("status", flat=True).first()


def test_fifty_concurrent_copies_of_one_event_have_one_effect(start_server):
    # Two server processes with eight threads each; events are processed right after their commit.
    server = start_server(args=("-w", "2", "-k", "gthread", "--threads", "8"), CELERY_TASK_ALWAYS_EAGER="1")
    body = event_body("evt_race", subscription_id="sub_RACE", status="ACTIVE")
    barrier = threading.Barrier(50)
    answers = []

    def deliver():
        barrier.wait()
        response = http_post(server.base_url, body)
        answers.append((response.status_code, response.json()["status"]))

    threads = [threading.Thread(target=deliver) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert len(answers) == 50
    assert {code for code, _ in answers} == {200}
    assert sorted(s for _, s in answers).count("received") == 1
    assert WebhookEvent.objects.count() == 1
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
    assert Subscription.objects.get().status == Status.ACTIVE
    assert StatusChange.objects.count() == 1
    assert len(stream_events()) == 1


def test_worker_processes_queued_events_and_retries_transient_failures(client, queued_tasks, start_worker):
    start_worker()
    assert post(client, event_body("evt_w1", subscription_id="sub_W1")).status_code == 200
    assert post(client, event_body("evt_w2", type="flaky", fail_times=5, subscription_id="sub_W2")).status_code == 200

    wait_for(lambda: _status("evt_w1") == "processed" and _status("evt_w2") == "processed", timeout=60,
             message="both events processed by the worker")
    flaky = WebhookEvent.objects.get(dedupe_key="evt_w2")
    assert flaky.attempts == 6 and flaky.error == ""
    # the stream entry follows the commit of the processing
    wait_for(lambda: len(stream_events()) >= 2, message="the stream entries")
    assert sorted(e["subscriptionId"] for e in stream_events()) == ["sub_W1", "sub_W2"]


def test_worker_killed_mid_task_processes_the_event_once_after_restart(client, queued_tasks, start_worker,
                                                                       redis_client):
    worker = start_worker(CELERY_VISIBILITY_TIMEOUT="2")
    assert post(client, event_body("evt_kill", type="sleep", seconds=60, subscription_id="sub_K")).status_code == 200
    wait_for(lambda: redis_client.exists("hooktest:sleeping:evt_kill"), message="the worker inside the adapter")

    worker.kill()

    event = WebhookEvent.objects.get(dedupe_key="evt_kill")
    assert event.status == WebhookEvent.Status.RECEIVED and event.attempts == 0  # the attempt rolled back
    assert not Subscription.objects.exists()

    start_worker(CELERY_VISIBILITY_TIMEOUT="2")  # the unacknowledged drain task is delivered again
    wait_for(lambda: _status("evt_kill") == "processed", timeout=60, message="the event processed after restart")
    event.refresh_from_db()
    assert event.attempts == 1
    assert StatusChange.objects.count() == 1
    wait_for(lambda: stream_events(), message="the stream entry")
    assert [e["subscriptionId"] for e in stream_events()] == ["sub_K"]


def test_broker_down_answers_2xx_and_the_sweeper_gets_it_processed(start_server, start_worker, queued_tasks):
    server = start_server(CELERY_BROKER_URL=f"redis://127.0.0.1:{closed_port()}/0")

    started = time.monotonic()
    response = http_post(server.base_url, event_body("evt_nobroker", subscription_id="sub_NB"))

    assert response.status_code == 200 and response.json() == {"status": "received"}
    assert time.monotonic() - started < 3
    assert _status("evt_nobroker") == "received"

    start_worker(WEBHOOK_SWEEP_AFTER_SECONDS="0")
    tasks.sweep_events.delay()  # what beat does every minute
    wait_for(lambda: _status("evt_nobroker") == "processed", timeout=60, message="the swept event processed")
    wait_for(lambda: stream_events(), message="the stream entry")
    assert [e["subscriptionId"] for e in stream_events()] == ["sub_NB"], stream_events()


def test_database_down_answers_503_so_the_store_retries(start_server):
    server = start_server(DATABASE_URL=f"postgres://postgres:postgres@127.0.0.1:{closed_port()}/billing")

    response = http_post(server.base_url, event_body("evt_nodb"))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    # still serving: a bad request is still told what is wrong
    bad = requests.post(f"{server.base_url}/webhooks/hooktest", data=b"{}", timeout=5)
    assert bad.status_code == 401


def test_bad_input_leaves_a_real_server_healthy(start_server, settings):
    server = start_server(WEBHOOK_MAX_BODY_BYTES="2048")
    url = f"{server.base_url}/webhooks/hooktest"

    assert requests.post(url, data=b"x" * 5000, timeout=5).status_code == 413
    assert requests.post(url, data=b"\x00\xff garbage", timeout=5,
                         headers={"X-Hooktest-Signature": "nope"}).status_code == 400
    assert requests.post(url, data=b"", timeout=5).status_code == 401
    assert not WebhookEvent.objects.exists()
    assert http_post(server.base_url, event_body("evt_after")).status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_two_drains_at_once_process_each_event_once(queued_tasks):
    for i in range(30):  # stored and queued (no worker runs here)
        body = event_body(f"evt_pair_{i}", subscription_id=f"sub_P{i}", user_id=str(100 + i))
        ingest.event_store(provider="hooktest", body=body, headers={},
                             verified=HookTestAdapter().authenticate({SIGNATURE_HEADER: sign(body)}, body, {}))
    assert WebhookEvent.objects.filter(status="received").count() == 30
    counts = []

    def drain():
        try:
            counts.append(processing.events_drain()[0])
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sum(counts) == 30
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert StatusChange.objects.count() == 30
    assert len(stream_events()) == 30
