"""What operations keeps: each beat job's last runs (job_runs.py) and the alerts raised about what
needs an operator (alerts/)."""

from django.db import models


class JobRun(models.Model):
    """The last runs of one beat job's task (CELERY_BEAT_SCHEDULE), written by Celery's task signals.
    `created_at`: when the job was first seen, the baseline of "not succeeded in twice its interval"
    for a job that never succeeded."""

    task = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_succeeded_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["task"]

    def __str__(self):
        return self.task


class Alert(models.Model):
    """One occurrence of an alert condition, from when it started to when it cleared. At most one open
    row per key (a partial unique constraint: two alert runs at once cannot both open it)."""

    key = models.CharField(max_length=200, help_text="Stable name of the condition, e.g. webhooks.dead:apple")
    summary = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    count = models.PositiveIntegerField(default=1, help_text="How many things the condition counts")
    url = models.CharField(max_length=500, blank=True, help_text="The admin page to act from")
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True, help_text="Last message delivered (new or reminder)")
    sent_count = models.PositiveIntegerField(default=0)
    last_send_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["key"], condition=models.Q(resolved_at__isnull=True),
                                               name="alert_one_open_per_key")]

    def __str__(self):
        return self.key

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
