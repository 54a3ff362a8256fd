"""Times as the API, the event stream and exports write them: ISO 8601 with "Z" for UTC."""

from datetime import datetime


def isoformat_z(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
