"""The audit log and staff notes. Plain references to billing's rows (ids, not foreign keys): billing
records here, so this app must not depend on it."""

from django.conf import settings
from django.db import models

from accounts.models import ApiKey, Subscriber


class AuditEntry(models.Model):
    """One staff or API-key action: who, what, on whom, why, and what it changed (to undo it)."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    actor_api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=255, help_text="Who, kept when the user or key is deleted")
    action = models.CharField(max_length=64, db_index=True, help_text="e.g. grant, revoke, replay, store_refund")
    reason = models.TextField(blank=True)
    subscriber = models.ForeignKey(Subscriber, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="audit_entries")
    subscription_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    target = models.CharField(max_length=255, blank=True, help_text="What was acted on, e.g. webhooks.webhookevent:12")
    details = models.JSONField(default=dict, blank=True, help_text="What changed: before and after, amounts")
    undoes = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="undone_by")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit log"
        permissions = [("export_auditentry", "Can export the audit log (CSV)")]

    def __str__(self):
        return f"{self.actor_label}: {self.action}"


class Note(models.Model):
    """A staff note on a subscriber, shown on the timeline."""

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    author_label = models.CharField(max_length=255)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["subscriber", "-created_at"], name="note_by_subscriber")]

    def __str__(self):
        return f"{self.author_label}: {self.text[:40]}"
