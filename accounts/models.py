"""Subscribers (the apps' users, known by their ids at each store), staff users and API keys."""

import hashlib
import secrets

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """Staff who sign in to the admin. Not the apps' users: those are Subscribers."""


class Subscriber(models.Model):
    """An app's user. `external_id` is the app's own user id (a string; often an integer)."""

    external_id = models.CharField(max_length=255, unique=True)
    email = models.EmailField(blank=True)
    # The same person at each store; any one of them finds the subscriber.
    stripe_customer_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    apple_app_account_token = models.UUIDField(unique=True, null=True, blank=True)
    google_obfuscated_account_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    xsolla_user_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Store identity fields, by the name snapshots use for them.
    IDENTITY_FIELDS = (
        "stripe_customer_id",
        "apple_app_account_token",
        "google_obfuscated_account_id",
        "xsolla_user_id",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.external_id


class ApiKey(models.Model):
    """A service caller's key. Only a SHA-256 of the key is stored (keys are 256-bit random,
    so a slow hash buys nothing); the prefix finds the row without scanning."""

    SCOPES = ("check", "read", "verify", "manage", "finance")
    PREFIX_LENGTH = 8

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, help_text="Any of: check, read, verify, manage, finance")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def generate(cls) -> tuple[str, str]:
        """A new (prefix, raw key). The raw key is shown once and never stored."""
        prefix = secrets.token_hex(cls.PREFIX_LENGTH // 2)
        return prefix, f"bk_{prefix}_{secrets.token_urlsafe(32)}"

    @classmethod
    def prefix_of(cls, raw_key: str) -> str | None:
        parts = raw_key.split("_", 2)
        if len(parts) != 3 or parts[0] != "bk" or len(parts[1]) != cls.PREFIX_LENGTH:
            return None
        return parts[1]
