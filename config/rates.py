"""The syntax of the RATE_LIMIT_* settings: "<count>/<window>", e.g. "60/minute", "5/hour", "60/10minutes";
"0" or "off" turns a limit off. Parsed when settings load, so a typo stops the start, not a request."""

import re
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int  # at most this many...
    window_seconds: int  # ...in any window of this many seconds (a sliding window)

    def __str__(self):
        return f"{self.limit}/{self.window_seconds}s"


def parse_rate(text: str, *, name: str = "rate") -> Rate | None:
    """The Rate that `text` describes; None when the limit is off ("0", "off" or empty)."""
    text = (text or "").strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    match = _RATE.match(text)
    unit = _UNITS.get(match[3]) if match else None
    if match is None or unit is None:
        raise ImproperlyConfigured(f"{name}={text!r}: expected '<count>/<window>', e.g. '60/minute', "
                                   "'5/hour', '60/10minutes', or 'off'")
    limit, multiple = int(match[1]), int(match[2] or 1)
    if limit == 0:
        return None
    if multiple == 0:
        raise ImproperlyConfigured(f"{name}={text!r}: the window cannot be zero")
    return Rate(limit, multiple * unit)
