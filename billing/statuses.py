"""The unified status rules: the nine statuses, which grant access, and until when.

Pure functions, no database: everything that decides "is this user entitled" comes through here."""

from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    INACTIVE = "INACTIVE"
    TRIAL = "TRIAL"
    ACTIVE = "ACTIVE"
    CANCELED = "CANCELED"  # will not renew; entitled until expires_at
    ON_GRACE = "ON_GRACE"  # payment failed, the store keeps access; until grace_until
    ON_HOLD = "ON_HOLD"
    PAUSED = "PAUSED"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"  # refunded or revoked: access ends at once


ENTITLED_STATUSES = frozenset({Status.TRIAL, Status.ACTIVE, Status.CANCELED, Status.ON_GRACE})
STATUS_CHOICES = [(s.value, s.value) for s in Status]


def grants_access(status: str) -> bool:
    """Whether the status grants access at all (before looking at dates)."""
    return status in ENTITLED_STATUSES


def access_ends_at(status: str, expires_at: datetime | None, grace_until: datetime | None) -> datetime | None:
    """When access ends for an entitled status: the later of the expiry and the grace end.
    None means no end is known (an open-ended grant). Meaningless for non-entitled statuses."""
    if status == Status.ON_GRACE and grace_until is not None:
        return grace_until if expires_at is None else max(grace_until, expires_at)
    if expires_at is not None and grace_until is not None:
        return max(expires_at, grace_until)
    return expires_at if expires_at is not None else grace_until


def is_entitled(status: str, expires_at: datetime | None, grace_until: datetime | None, now: datetime) -> bool:
    """Entitled now: an entitled status, and not past its expiry (and grace) whatever the status says."""
    if not grants_access(status):
        return False
    ends = access_ends_at(status, expires_at, grace_until)
    return ends is None or now < ends


def lapsed_status(status: str) -> str:
    """What an entitled subscription past its end becomes (the expiry sweep applies this)."""
    return Status.EXPIRED if grants_access(status) else status
