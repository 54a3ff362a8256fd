import json

import pytest
from celery import current_app

from webhooks.models import WebhookEvent

from .helpers import Server, Worker, post


@pytest.fixture
def queued_tasks():
    """This test process publishes tasks to the broker (as a deployment does) instead of running them."""
    previous = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False
    yield
    current_app.conf.task_always_eager = previous


@pytest.fixture
def start_worker(tmp_path):
    workers = []

    def start(**env):
        workers.append(Worker(tmp_path, **env).start())
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(**kw):
        servers.append(Server(tmp_path, **kw).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def send(client, django_capture_on_commit_callbacks):
    """POST a signed event (answered 200) with its commit hooks run as after a real commit (the queue
    runs in-process in tests); returns the stored event."""
    def send(body, **kw):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, body, **kw)
        assert response.status_code == 200, response.content
        return WebhookEvent.objects.get(dedupe_key=json.loads(body)["id"])
    return send


@pytest.fixture
def run_hooks(django_capture_on_commit_callbacks):
    """Run a callable with its commit hooks executed (outbox relay, queue)."""
    def run(fn, *args, **kw):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kw)
    return run


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 0
