"""Outgoing webhooks: endpoints staff register, a copy of each status change taken from the outbox
(`Event`), one `Delivery` per (endpoint, event) and every `Attempt` at it (docs/events.md, "Outgoing
webhooks"). outgoing reads billing's outbox; billing knows nothing of this app."""

import secrets

from django.db import models

from billing.snapshots import Provider
from billing.statuses import Status

SECRET_PREFIX = "whsec_"


def secret_generate() -> str:
    """A fresh signing secret: 256 random bits, prefixed so that a leaked one is recognisable."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class Endpoint(models.Model):
    """A consumer's URL. Empty filters mean every status change; otherwise only the changes whose
    `newStatus` is in `new_statuses` AND whose `provider` is in `providers` (each filter that is set)."""

    url = models.URLField(max_length=2000, help_text="Receives a signed POST per status change.")
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, default=secret_generate, editable=False)
    active = models.BooleanField(default=True, help_text="Inactive: no new deliveries, pending ones wait.")
    new_statuses = models.JSONField(default=list, blank=True,
                                    help_text="Only these newStatus values (none ticked: all).")
    providers = models.JSONField(default=list, blank=True, help_text="Only these providers (none ticked: all).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    STATUS_CHOICES = [(s.value, s.value) for s in Status]
    PROVIDER_CHOICES = Provider.CHOICES

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.url

    def wants(self, payload: dict) -> bool:
        return ((not self.new_statuses or payload.get("newStatus") in self.new_statuses)
                and (not self.providers or payload.get("provider") in self.providers))


class Event(models.Model):
    """One outbox row, as the stream publishes it. Kept here so that deliveries do not depend on how
    long billing keeps its outbox, and so that the fan-out knows which rows it has seen."""

    outbox_id = models.BigIntegerField(unique=True)  # not a foreign key: the outbox may be pruned
    event_id = models.UUIDField(db_index=True)
    payload = models.JSONField()
    outbox_created_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.payload.get('newStatus')} {self.event_id}"


class FanoutCursor(models.Model):
    """One row: every outbox row with an id up to `outbox_id` has been fanned out (fanout.py)."""

    outbox_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"fanned out up to outbox row {self.outbox_id}"


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        DEAD = "dead", "dead"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="delivery_once_per_endpoint")]
        indexes = [models.Index(fields=["next_attempt_at"], name="delivery_due",
                                condition=models.Q(status="pending")),
                   # the admin index's "Needs attention" count
                   models.Index(fields=["status"], name="delivery_dead", condition=models.Q(status="dead"))]

    def __str__(self):
        return f"{self.event} → {self.endpoint}"


class Attempt(models.Model):
    """One POST and its answer (or the error that stood for one)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first bytes of the answer.")
    error = models.TextField(blank=True)
    ok = models.BooleanField(default=False)

    class Meta:
        ordering = ["number", "id"]

    def __str__(self):
        return f"attempt {self.number}"
