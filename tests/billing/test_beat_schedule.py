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
