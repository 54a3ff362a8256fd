"""The raw event audit table: every authentic webhook, stored before it is answered."""

from django.db import models

from billing.models import Subscription
from billing.snapshots import Provider


class WebhookEvent(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", "received"  # stored, waiting for (or in) processing
        PROCESSED = "processed", "processed"
        IGNORED = "ignored", "ignored"  # authentic, nothing to do (test, a type we do not act on, stale)
        FAILED = "failed", "failed"  # permanent failure: needs a fix, then a replay
        DEAD = "dead", "dead"  # retryable failures until the retry horizon passed (and the attempts were used)

    provider = models.CharField(max_length=16, choices=Provider.CHOICES)
    dedupe_key = models.CharField(max_length=255)
    event_type = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    body = models.BinaryField()
    headers = models.JSONField(default=dict, blank=True)
    payload = models.JSONField(default=dict, blank=True, help_text="The verified, decoded content")
    payload_problem = models.TextField(
        blank=True, help_text="Why the decoded content is not stored (the body cannot be decoded, or holds what "
                              "PostgreSQL refuses): processing decodes the stored bytes again")
    store_ids = models.JSONField(default=list, blank=True, help_text="The store's ids found in the event")
    store_ids_text = models.TextField(blank=True, help_text="store_ids joined, for search")
    environment = models.CharField(max_length=16, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(
        null=True, blank=True,
        help_text="The first failed attempt of the current retries: the retry horizon counts from here")
    # db_default: ingestion inserts events with raw SQL naming only its own columns
    done_while_failing = models.CharField(
        max_length=255, blank=True, default="", db_default="",
        help_text="What the store's deadline required while the event kept failing "
                  "(Google: the purchase acknowledged from the notification)")
    outcome = models.TextField(blank=True, help_text="What processing did, or why it was ignored")
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    subscriptions = models.ManyToManyField(Subscription, blank=True, related_name="webhook_events")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["provider", "dedupe_key"], name="webhook_event_unique")]
        indexes = [
            models.Index(fields=["status", "received_at"], name="webhook_event_by_status"),
            models.Index(fields=["provider", "-received_at"], name="webhook_event_by_provider"),
            # the admin index's last-day counts and the date hierarchy
            models.Index(fields=["received_at"], name="webhook_event_by_time"),
            # Retention: events processed (or ignored) before the cutoff, without reading the rest
            # (those never stamped processed are found by the (status, received_at) index).
            models.Index(fields=["processed_at"], name="webhook_event_done_by_time",
                         condition=models.Q(status__in=["ignored", "processed"])),
        ]

    def __str__(self):
        return f"{self.provider}:{self.event_type or '?'}:{self.dedupe_key}"
