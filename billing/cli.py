"""What the management commands share: the date or date-time argument (`--since 2026-11-01`,
`--until 2026-11-01T10:00Z`), always meant as UTC when no offset is given."""

import argparse
from datetime import UTC, datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


def moment(value: str) -> datetime:
    """An argparse `type`: a date (its start, 00:00 UTC) or an ISO 8601 date-time."""
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        day = parse_date(value) if _is_date(value) else None
        if day is None:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a date: give a date (2026-11-01) or a date and time (2026-11-01T10:00Z)")
        parsed = datetime.combine(day, time.min)
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def _is_date(value: str) -> bool:
    try:
        return parse_date(value) is not None
    except ValueError:
        return False
