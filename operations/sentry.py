"""Optional error tracking: Sentry (sentry-sdk, Django and Celery integrations) when SENTRY_DSN is set
(settings "Error tracking", docs/operations.md "Errors").

Nothing personal or secret leaves: no default PII, no local variables of stack frames (they hold raw
bodies and tokens), no request bodies, cookies or query strings; of the headers only an allowlist;
no user; every string of the event passes through the log redaction (operations/logging.py) and has
e-mail addresses masked. Each event is tagged with the request id / task id / event id of its log
lines, so an error leads to them."""

import re

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration

from .log_context import current
from .logging import REDACTED, redact

# Headers worth seeing in an error report; Authorization, Cookie, Stripe-Signature,
# X-Pubsub-Verification-Token, forwarding addresses and the rest are dropped.
KEPT_HEADERS = {"accept", "content-type", "content-length", "host", "user-agent", "x-request-id"}
# Context fields that are not personal (user_id is the app's user: left out).
TAGGED_FIELDS = ("request_id", "task_id", "task_name", "event_id", "subscription_id")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def sentry_init(dsn: str, *, environment: str, traces_sample_rate: float) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        traces_sample_rate=traces_sample_rate,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
    )


def before_send(event: dict, hint: dict | None = None) -> dict:
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("data", "cookies", "query_string", "env"):
            request.pop(key, None)
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
        headers = request.get("headers") or {}
        request["headers"] = {k: v for k, v in headers.items() if k.lower() in KEPT_HEADERS}
    event.pop("user", None)
    job = (event.get("extra") or {}).get("celery-job")
    if isinstance(job, dict):  # task arguments: user ids, purchase tokens
        job.pop("args", None)
        job.pop("kwargs", None)
    context = current()
    tags = event.setdefault("tags", {})
    for field in TAGGED_FIELDS:
        if field in context:
            tags[field] = str(context[field])
    return _scrubbed(event)


def before_breadcrumb(crumb: dict, hint: dict | None = None) -> dict:
    data = crumb.get("data")
    if isinstance(data, dict):  # an outgoing HTTP call's query string and fragment
        data.pop("http.query", None)
        data.pop("http.fragment", None)
    return _scrubbed(crumb)


def _scrubbed(value):
    if isinstance(value, str):
        return _EMAIL.sub(REDACTED, redact(value))
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value
