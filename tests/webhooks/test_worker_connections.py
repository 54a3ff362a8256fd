"""A Celery worker keeps its database connection across tasks (CELERY_DB_REUSE_MAX reaches Celery's
Django fix-up): opening a PostgreSQL connection per task cost about 2.8x in processing rate."""

import time

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from config.celery import app
from webhooks.models import WebhookEvent

from .adapter import event_body
from .helpers import post, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def sessions_ended() -> int:
    """Sessions of the test database that have ended so far (PostgreSQL counts one when it closes)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_a_worker_reuses_its_database_connection_across_tasks(client, queued_tasks, start_worker):
    start_worker()
    assert post(client, event_body("evt_c0", subscription_id="sub_C0")).status_code == 200
    wait_for(lambda: WebhookEvent.objects.filter(status="processed").count() == 1, timeout=60,
             message="the first event processed")
    time.sleep(1.5)  # statistics reach pg_stat_database within a second
    before = sessions_ended()

    for i in range(1, 21):  # one at a time: each its own task (the drain would batch a burst)
        assert post(client, event_body(f"evt_c{i}", subscription_id=f"sub_C{i}")).status_code == 200
        wait_for(lambda i=i: WebhookEvent.objects.filter(status="processed").count() == i + 1, timeout=60,
                 message=f"event {i} processed")
    time.sleep(1.5)
    # Without reuse the worker closes its connection after each of these tasks; with it, none ends.
    assert sessions_ended() - before < 3


def test_the_setting_reaches_celerys_django_fixup():
    assert DjangoWorkerFixup(app).db_reuse_max == 1000
