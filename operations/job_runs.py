"""When each beat job last started, succeeded and failed: recorded from Celery's task signals
(config/celery.py connects them) for the tasks named in CELERY_BEAT_SCHEDULE only, read by the alerts
("not succeeded in twice its interval") and by /metrics (`last_successes`)."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import JobRun

logger = logging.getLogger(__name__)

ERROR_MAX_CHARS = 2000


def beat_task_names() -> set[str]:
    return {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


def _record(task: str, **fields) -> None:
    """One UPDATE (an INSERT the first time). Never fails the task: a lost record is only a late alert."""
    if task not in beat_task_names():
        return
    try:
        with transaction.atomic():  # a savepoint: a failure here never breaks a caller's transaction
            if not JobRun.objects.filter(task=task).update(**fields):
                JobRun.objects.update_or_create(task=task, defaults=fields)
    except Exception:
        logger.exception("could not record a run of beat job %s", task)


def record_started(task: str) -> None:
    _record(task, last_started_at=timezone.now())


def record_succeeded(task: str) -> None:
    _record(task, last_succeeded_at=timezone.now())


def record_failed(task: str, error: BaseException | str) -> None:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    _record(task, last_failed_at=timezone.now(), last_error=text[:ERROR_MAX_CHARS])


def last_successes() -> dict[str, datetime]:
    """Task name → when it last succeeded, for every beat job that ever did."""
    return dict(JobRun.objects.filter(last_succeeded_at__isnull=False).values_list("task", "last_succeeded_at"))


@dataclass(frozen=True)
class ScheduledJob:
    name: str  # the CELERY_BEAT_SCHEDULE key (django-celery-beat's PeriodicTask name)
    task: str
    interval: timedelta


def _interval(schedule) -> timedelta | None:
    if isinstance(schedule, (int, float)):
        return timedelta(seconds=schedule)
    if isinstance(schedule, timedelta):
        return schedule
    return getattr(schedule, "run_every", None)  # celery's schedule(); a crontab has none


def scheduled_jobs() -> list[ScheduledJob]:
    """The beat jobs as they run: staff edit intervals and pause jobs in the admin (django-celery-beat's
    PeriodicTask, config/beat.py keeps their edits), so its row wins over the code's schedule; a paused
    job is left out (it is not expected to run). Crontab jobs have no interval and are left out."""
    from django_celery_beat.models import PeriodicTask  # optional app: only where beat's tables exist

    rows = {row.name: row for row in PeriodicTask.objects.filter(name__in=list(settings.CELERY_BEAT_SCHEDULE))
            .select_related("interval")}
    jobs = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        row = rows.get(name)
        if row is not None and not row.enabled:
            continue
        interval = (row.interval.schedule.run_every if row is not None and row.interval is not None
                    else _interval(entry["schedule"]))
        if interval:
            jobs.append(ScheduledJob(name, entry["task"], interval))
    return jobs


def overdue_jobs(now: datetime) -> list[tuple[ScheduledJob, JobRun]]:
    """Beat jobs that have not succeeded in twice their interval. A job never seen before gets its row
    now: its clock starts at the first look, so a fresh deployment does not alert at once."""
    jobs = scheduled_jobs()
    runs = {run.task: run for run in JobRun.objects.filter(task__in=[job.task for job in jobs])}
    for job in jobs:
        if job.task not in runs:
            runs[job.task], _ = JobRun.objects.get_or_create(task=job.task)
    overdue = []
    for job in jobs:
        run = runs[job.task]
        since = run.last_succeeded_at or run.created_at
        if now - since > 2 * job.interval:
            overdue.append((job, run))
    return overdue
