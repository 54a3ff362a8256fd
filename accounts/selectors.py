"""Reads of subscribers."""

from .models import Subscriber


def subscriber_by_external_id(external_id: str) -> Subscriber | None:
    return Subscriber.objects.filter(external_id=str(external_id)).first()


def subscriber_by_identity(field: str, value) -> Subscriber | None:
    """Find a subscriber by one of their store identities (see Subscriber.IDENTITY_FIELDS)."""
    if field not in Subscriber.IDENTITY_FIELDS or value in (None, ""):
        return None
    return Subscriber.objects.filter(**{field: value}).first()


def subscriber_for_request(request):
    """dj-stripe's request callback: API callers are services, not subscribers."""
    return None
