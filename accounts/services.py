"""Writes of subscribers."""

import logging

from django.db import IntegrityError, transaction

from .models import Subscriber

logger = logging.getLogger(__name__)


def subscriber_get_or_create(*, external_id: str, email: str = "") -> Subscriber:
    external_id = str(external_id).strip()
    if not external_id:
        raise ValueError("external_id must not be empty")
    try:
        with transaction.atomic():
            subscriber, _created = Subscriber.objects.get_or_create(
                external_id=external_id, defaults={"email": email or ""})
    except IntegrityError:  # a concurrent writer created it first
        subscriber = Subscriber.objects.get(external_id=external_id)
    if email and not subscriber.email:
        Subscriber.objects.filter(pk=subscriber.pk).update(email=email)
        subscriber.email = email
    return subscriber


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
