"""The periodic jobs: created from the code's schedule, then staff's to edit in the admin."""

import pytest
from celery import current_app
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.beat import DatabaseScheduler

# transaction=True: the scheduler closes its database connection, as beat does between ticks
pytestmark = pytest.mark.django_db(transaction=True)


def test_every_job_of_the_code_is_created_and_staff_edits_survive_a_restart():
    DatabaseScheduler(app=current_app)  # beat starting
    jobs = {t.name: t for t in PeriodicTask.objects.select_related("interval")}
    assert set(settings.CELERY_BEAT_SCHEDULE) <= set(jobs)
    assert jobs["webhooks-sweep"].task == "webhooks.tasks.sweep_events" and jobs["webhooks-sweep"].interval.every == 60
    assert jobs["billing-relay-outbox"].task == "billing.tasks.relay_outbox"

    sweep = jobs["webhooks-sweep"]
    sweep.interval = IntervalSchedule.objects.create(every=120, period=IntervalSchedule.SECONDS)  # staff slow it
    sweep.save()
    PeriodicTask.objects.filter(name="billing-repoll-subscriptions").update(enabled=False)  # and stop a job
    PeriodicTask.objects.filter(name="billing-expire-lapsed").delete()  # a job deleted by mistake

    DatabaseScheduler(app=current_app)  # the next deploy
    jobs = {t.name: t for t in PeriodicTask.objects.select_related("interval")}
    assert jobs["webhooks-sweep"].interval.every == 120
    assert jobs["billing-repoll-subscriptions"].enabled is False
    assert jobs["billing-expire-lapsed"].task == "billing.tasks.expire_lapsed"  # back from the code


def test_every_scheduled_task_exists():
    """A task that moved must take its schedule along: beat would send a name no worker knows."""
    current_app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in current_app.tasks, name


def test_a_beat_row_of_a_moved_task_follows_it():
    """The Apple recovery's task moved to webhooks.tasks: the row an existing deployment holds (kept
    as staff left it) is renamed by the migration, so the job keeps running after the deploy."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("webhooks.migrations.0003_beat_task_names")
    every_6h = IntervalSchedule.objects.create(every=6, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.create(name="apple-recover-failed", task=migration.OLD, interval=every_6h)
    migration.rename(apps, None)
    assert PeriodicTask.objects.get(name="apple-recover-failed").task == "webhooks.tasks.recover_apple_notifications"
    assert migration.NEW in current_app.tasks
