"""Writes of subscribers and API keys."""

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from .authentication import clear_api_key_cache
from .models import ApiKey, Subscriber

logger = logging.getLogger(__name__)


def subscriber_get_or_create(*, external_id: str, email: str = "") -> Subscriber:
    external_id = str(external_id).strip()
    if not external_id:
        raise ValueError("external_id must not be empty")
    return subscribers_get_or_create(emails={external_id: email})[external_id]


def subscribers_get_or_create(*, emails: dict[str, str]) -> dict[str, Subscriber]:
    """The subscribers with these external ids (stripped, non-empty), created if missing, by external
    id; `emails` gives each one's email (kept on a subscriber that has none yet). One query when they
    all exist; a concurrent writer creating the same subscriber is not an error."""
    emails = {str(k).strip(): v or "" for k, v in emails.items()}
    if "" in emails:
        raise ValueError("external_id must not be empty")
    found = {s.external_id: s for s in Subscriber.objects.filter(external_id__in=list(emails))}
    missing = [k for k in emails if k not in found]
    if missing:
        Subscriber.objects.bulk_create([Subscriber(external_id=k, email=emails[k]) for k in missing],
                                       ignore_conflicts=True)
        found.update((s.external_id, s) for s in Subscriber.objects.filter(external_id__in=missing))
    for external_id, subscriber in found.items():
        email = emails[external_id]
        if email and not subscriber.email:
            Subscriber.objects.filter(pk=subscriber.pk).update(email=email)
            subscriber.email = email
    return found


def subscriber_set_identity(*, subscriber: Subscriber, field: str, value) -> bool:
    """Remember a store identity for a subscriber, unless it is empty, already set, or another
    subscriber owns it (that conflict is logged, never silently moved)."""
    if field not in Subscriber.IDENTITY_FIELDS or value in (None, ""):
        return False
    if getattr(subscriber, field) not in (None, ""):
        if str(getattr(subscriber, field)) != str(value):
            logger.warning("subscriber %s already has %s=%s; not replacing with %s",
                           subscriber.external_id, field, getattr(subscriber, field), value)
        return False
    if Subscriber.objects.filter(**{field: value}).exclude(pk=subscriber.pk).exists():
        logger.warning("%s=%s belongs to another subscriber; not linking to %s", field, value,
                       subscriber.external_id)
        return False
    try:
        with transaction.atomic():
            Subscriber.objects.filter(pk=subscriber.pk).update(**{field: value})
    except IntegrityError:
        return False
    setattr(subscriber, field, value)
    return True


def api_key_create(*, name: str, scopes: list[str], created_by=None) -> tuple[ApiKey, str]:
    """A new API key and its raw value (shown once; only its hash is stored)."""
    name = name.strip()
    if not name:
        raise ValueError("A key needs a name (who uses it).")
    scopes = [s.strip() for s in scopes if s.strip()]
    unknown = sorted(set(scopes) - set(ApiKey.SCOPES))
    if unknown or not scopes:
        raise ValueError(f"Unknown scope(s) {', '.join(unknown) or '(none given)'}: choose from "
                         f"{', '.join(ApiKey.SCOPES)}.")
    prefix, raw = ApiKey.generate()
    key = ApiKey.objects.create(name=name, prefix=prefix, hashed_key=ApiKey.hash(raw),
                                scopes=[s for s in ApiKey.SCOPES if s in scopes], created_by=created_by)
    return key, raw


def api_key_revoke(*, prefix: str) -> ApiKey:
    """Revoke a key. This process forgets it at once; other processes within API_KEY_CACHE_SECONDS."""
    key = ApiKey.objects.get(prefix=prefix)
    if key.revoked_at is None:
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        key.refresh_from_db()
    clear_api_key_cache()
    return key
