"""Celery beat's scheduler: django-celery-beat's, so staff edit the periodic jobs in the admin.

django-celery-beat rewrites every job named in CELERY_BEAT_SCHEDULE from the code each time beat
starts, so an interval staff changed, or a job they disabled, would come back at the next deploy.
Here the code's schedule only creates the jobs that are missing; what staff changed stays."""

from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler as BaseDatabaseScheduler


class DatabaseScheduler(BaseDatabaseScheduler):
    def update_from_dict(self, mapping):
        existing = set(PeriodicTask.objects.filter(name__in=list(mapping)).values_list("name", flat=True))
        super().update_from_dict({name: entry for name, entry in mapping.items() if name not in existing})
