"""The service's log lines: one JSON object per line in production, readable text under `make run`
(settings "Logging", docs/operations.md "Logs").

- `ContextFilter` (on the handler) copies the current log context (operations/log_context.py: request
  id, task id, event / subscription / user ids) onto every record.
- `JsonFormatter`: `time` (UTC, ISO 8601), `level`, `logger`, `message`, the context fields, `exc_info`.
- `TextFormatter`: `time level logger message key=value…`.
- Both pass their output through `redact`: the safety net behind log calls that never print secrets.
  It masks every configured secret's value, `Authorization`-style credentials (`Api-Key …`,
  `Bearer …`), JWTs and Stripe keys, wherever they appear in a line (a message, an argument, a
  traceback)."""

import logging
import re
from datetime import UTC, datetime

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from .log_context import FIELDS, current

REDACTED = "[redacted]"

# Settings whose values never appear in a line (docs/operations.md "Logs").
SECRET_SETTINGS = ("SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "XSOLLA_WEBHOOK_SECRET",
                   "XSOLLA_API_KEY", "GOOGLE_PUBSUB_VERIFICATION_TOKEN", "JWT_SECRET",
                   "METRICS_TOKEN", "ALERT_WEBHOOK_URL", "SENTRY_DSN")
_MIN_SECRET_LENGTH = 6  # shorter values ("", "1") would mask ordinary text and protect nothing

_CREDENTIAL_PATTERNS = (
    # An Authorization header's value, whatever the secret looks like.
    (re.compile(r"(?i)\b(api-key|bearer)(\s+)[^\s\"',;&\\]+"), rf"\1\2{REDACTED}"),
    # A query's or a form's token=…, secret=…, password=… (a push URL's ?token=).
    (re.compile(r"(?i)\b(token|secret|password|api_key|apikey)(\s*[:=]\s*)[^\s\"',;&\\]+"), rf"\1\2{REDACTED}"),
    # A JWT (header.payload.signature; both first parts are base64url JSON: "eyJ").
    (re.compile(r"\beyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]*"), REDACTED),
    # Stripe secret and restricted keys, webhook signing secrets.
    (re.compile(r"\b(sk|rk)_(live|test)_[0-9A-Za-z]{8,}"), rf"\1_\2_{REDACTED}"),
    (re.compile(r"\bwhsec_[0-9A-Za-z_]{6,}"), f"whsec_{REDACTED}"),
)

_secrets_cache: tuple[tuple, re.Pattern | None] = ((), None)


def _configured_secrets() -> re.Pattern | None:
    """One regex of the configured secrets' values, rebuilt when settings change (tests override them)."""
    global _secrets_cache
    from django.conf import settings  # here: the formatters are built while settings are being read

    try:
        values = tuple(str(getattr(settings, name, "") or "") for name in SECRET_SETTINGS)
    except Exception:  # settings not configured yet (a line logged during start-up)
        return None
    if values != _secrets_cache[0]:
        wanted = sorted({v for v in values if len(v) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(v) for v in wanted)) if wanted else None
        _secrets_cache = (values, pattern)
    return _secrets_cache[1]


def redact(text: str) -> str:
    """`text` with every secret and credential it contains replaced by "[redacted]"."""
    secrets = _configured_secrets()
    if secrets is not None:
        text = secrets.sub(REDACTED, text)
    for pattern, replacement in _CREDENTIAL_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Puts the current log context's fields on the record (a field given as `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# Record attributes that are not written: Django's `request` extra would print the URL with its query
# string (a token may travel there); `server_time` duplicates `time`.
_NOT_WRITTEN = {*RESERVED_ATTRS, "request", "server_time", "color_message"}


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, then the context and any `extra=`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("reserved_attrs", _NOT_WRITTEN)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict) -> dict:
        # Before serialising: a secret is matched as configured, not as JSON escapes it.
        return {key: _redacted(value) for key, value in log_data.items()}


def _redacted(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


class TextFormatter(logging.Formatter):
    """`2026-01-31 12:00:00,123 INFO webhooks.processing message request_id=… event_id=…`."""

    def __init__(self, fmt: str | None = None, *args, **kwargs):
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s %(message)s", *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None)
        if fields:
            head, newline, rest = line.partition("\n")  # after the message, before a traceback
            line = f"{head} {fields}{newline}{rest}"
        return redact(line)
