"""The webhook WSGI fast path (webhooks/wsgi.py) answers as the full path does: for every kind of answer
the same status, body and content type, the same row stored (or none), the same rejection counted; and
what it does not take (other methods, a Host that is not allowed, plain HTTP under SECURE_SSL_REDIRECT)
reaches Django unchanged."""

import io
import json

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.forms.models import model_to_dict

from webhooks import selectors
from webhooks.models import WebhookEvent
from webhooks.wsgi import WebhookWSGIFastPath

from .adapter import SIGNATURE_HEADER, event_body, sign

pytestmark = pytest.mark.django_db

# Differ between two deliveries of the same body by nature (times: whether set is compared).
_NOT_COMPARED = {"id", "received_at", "processed_at", "subscriptions"}


class FullPath:
    """Django's own WSGI handler, counting the requests handed to it."""

    def __init__(self):
        self.django = WSGIHandler()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        response = self.django(environ, start_response)
        body = b"".join(response)
        response.close()
        return [body]


@pytest.fixture(autouse=True)
def test_connection_kept():
    """As Django's test client does: the test's connection (inside its transaction) is not closed at the
    start and end of a request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def full():
    return FullPath()


@pytest.fixture
def fast(full):
    return WebhookWSGIFastPath(full)


def call(app, body: bytes = b"", *, path="/webhooks/hooktest", method="POST", signature: str | None = "sign",
         host="testserver", **extra) -> dict:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "testserver",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "REMOTE_ADDR": "203.0.113.9",
               "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": host, **extra}
    if signature:
        environ[f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}"] = sign(body) if signature == "sign" else signature
    answered = {}

    def start_response(status, headers, exc_info=None):
        answered["status"], answered["headers"] = status, dict(headers)

    answered["body"] = b"".join(app(environ, start_response))
    return answered


def same_answer(fast_answer: dict, full_answer: dict) -> None:
    assert fast_answer["status"] == full_answer["status"]
    assert fast_answer["body"] == full_answer["body"]
    assert fast_answer["headers"].get("Content-Type") == full_answer["headers"].get("Content-Type")
    assert fast_answer["headers"]["X-Request-ID"]
    if fast_answer["body"]:
        assert int(fast_answer["headers"]["Content-Length"]) == len(fast_answer["body"])


def stored() -> list[dict]:
    return [{k: (bytes(v) if isinstance(v, memoryview) else v) for k, v in model_to_dict(e).items()
             if k not in _NOT_COMPARED}
            | {"processed": e.processed_at is not None} for e in WebhookEvent.objects.order_by("id")]


def both(fast, full, body: bytes, **kw) -> tuple[dict, dict, list, list]:
    """The same request through the full path, then (its rows removed) through the fast path."""
    full_answer = call(full, body, **kw)
    full_rows = stored()
    WebhookEvent.objects.all().delete()
    calls = full.calls
    fast_answer = call(fast, body, **kw)
    assert full.calls == calls, "the fast path handed the request to Django"
    return fast_answer, full_answer, stored(), full_rows


@pytest.mark.parametrize("path", ["/webhooks/hooktest", "/webhooks/hooktest/"])
def test_a_new_event_is_stored_and_answered_as_by_the_full_path(fast, full, path):
    fast_answer, full_answer, fast_rows, full_rows = both(fast, full, event_body("evt_fast", padding="é"), path=path)

    same_answer(fast_answer, full_answer)
    assert json.loads(fast_answer["body"]) == {"status": "received"}
    assert fast_rows == full_rows and len(fast_rows) == 1
    assert fast_rows[0]["status"] == WebhookEvent.Status.RECEIVED


def test_a_repeat_delivery_is_answered_as_by_the_full_path(fast, full):
    body = event_body("evt_twice")
    call(full, body)
    full_answer = call(full, body)
    fast_answer = call(fast, body)

    same_answer(fast_answer, full_answer)
    assert json.loads(fast_answer["body"]) == {"status": "duplicate"}
    assert WebhookEvent.objects.count() == 1


def test_a_synchronous_answer_is_the_same(fast, full):
    fast_answer, full_answer, fast_rows, full_rows = both(fast, full, event_body("evt_ping", type="ping"))

    same_answer(fast_answer, full_answer)
    assert fast_answer["status"].startswith("204")
    assert fast_rows == full_rows and fast_rows[0]["status"] == WebhookEvent.Status.IGNORED


@pytest.mark.parametrize(("signature", "body", "status"), [
    ("", event_body("evt_x"), "401"),
    ("0" * 64, event_body("evt_x"), "400"),
    ("sign", b"{not json", "400"),
])
def test_a_refusal_is_the_same_and_counted_once(fast, full, signature, body, status):
    fast_answer, full_answer, fast_rows, full_rows = both(fast, full, body, signature=signature)

    same_answer(fast_answer, full_answer)
    assert fast_answer["status"].startswith(status)
    assert fast_rows == full_rows == []
    counts = {row["provider"]: row for row in selectors.event_counts_last_day()}
    assert counts["hooktest"]["rejected"] == 2  # one per path


def test_the_body_limit_is_the_same(fast, full, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 200
    fast_answer, full_answer, fast_rows, full_rows = both(fast, full, event_body("evt_big", padding="x" * 300))

    same_answer(fast_answer, full_answer)
    assert fast_answer["status"].startswith("413")
    assert fast_rows == full_rows == []


def test_an_unknown_provider_is_the_same_404(fast, full):
    fast_answer, full_answer, _, _ = both(fast, full, b"{}", path="/webhooks/paypal")

    same_answer(fast_answer, full_answer)
    assert fast_answer["status"].startswith("404")


def test_the_callers_request_id_is_kept(fast):
    answer = call(fast, event_body("evt_rid"), HTTP_X_REQUEST_ID="caller-id-1")

    assert answer["headers"]["X-Request-ID"] == "caller-id-1"


@pytest.mark.parametrize("kw", [
    {"method": "GET"},  # the 405 with its Allow header
    {"host": "evil.example"},  # the full path refuses it (DisallowedHost)
    {"path": "/webhooks/hooktest/extra"},
])
def test_what_the_fast_path_does_not_take_reaches_django(fast, full, kw):
    answer = call(fast, event_body("evt_other"), **kw)

    assert full.calls == 1
    assert not answer["status"].startswith("2")
    assert not WebhookEvent.objects.exists()


def test_plain_http_under_ssl_redirect_reaches_django(settings):
    settings.SECURE_SSL_REDIRECT = True
    full = FullPath()  # the middleware reads the setting when it is built
    fast = WebhookWSGIFastPath(full)
    answer = call(fast, event_body("evt_http"))

    assert full.calls == 1 and answer["status"].startswith("301")
    https = call(fast, event_body("evt_https"), **{"wsgi.url_scheme": "https"})
    assert full.calls == 1 and https["status"].startswith("200")


@pytest.mark.parametrize("signed", [True, False])
def test_a_stores_dialect_is_the_same(fast, full, settings, signed):
    """Xsolla's: 204 without a body for a stored notification, 400 INVALID_SIGNATURE in its error shape."""
    from billing.providers.xsolla.auth import authorization_header

    settings.XSOLLA_WEBHOOK_SECRET = "fast-path-secret"
    body = json.dumps({"notification_type": "update_subscription", "user": {"id": "42"},
                       "subscription": {"plan_id": "p1", "subscription_id": "77", "product_id": "Demo",
                                        "date_next_charge": "2026-12-22T19:25:25+04:00"}}).encode()
    authorization = authorization_header(body, "fast-path-secret" if signed else "another-secret")
    fast_answer, full_answer, fast_rows, full_rows = both(fast, full, body, path="/webhooks/xsolla", signature=None,
                                                          HTTP_AUTHORIZATION=authorization)

    same_answer(fast_answer, full_answer)
    assert fast_answer["status"].startswith("204" if signed else "400")
    assert fast_rows == full_rows and len(fast_rows) == (1 if signed else 0)


@pytest.mark.django_db(transaction=True)
def test_a_connection_broken_since_the_last_request_costs_the_store_nothing(fast, full):
    """The fast path skips Django's per-request connection check; a connection that broke in between is
    closed and the webhook answered (and stored) by the full path, which reconnects."""
    from django.db import connection

    assert call(fast, event_body("evt_before"))["status"].startswith("200")
    connection.connection.close()  # the server went away under an idle connection

    answer = call(fast, event_body("evt_after"))

    assert answer["status"].startswith("200") and full.calls == 1
    assert json.loads(answer["body"]) == {"status": "received"}
    assert WebhookEvent.objects.filter(dedupe_key="evt_after").count() == 1
