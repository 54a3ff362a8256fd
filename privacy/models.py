"""What privacy keeps of its own: the record of each erasure (who, when, why, how many rows), never the
erased data itself."""

from django.conf import settings
from django.db import models


class Erasure(models.Model):
    """One `erase_subscriber` (or the admin's erase action). `pseudonym` is the subscriber's id now: the
    ledger and the subscriptions kept stay findable by it, and nothing here leads back to the person."""

    pseudonym = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    actor_label = models.CharField(max_length=255, help_text="Who, kept when the staff user is deleted")
    reason = models.TextField()
    forced = models.BooleanField(default=False, help_text="Live paid subscriptions were revoked here (--force)")
    counts = models.JSONField(default=dict, help_text="Rows changed, per kind")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"erasure of {self.pseudonym} ({self.created_at:%Y-%m-%d})"
