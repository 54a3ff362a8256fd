"""Error tracking (docs/operations.md "Errors"): with SENTRY_DSN set, an error in a view reaches Sentry
(a local HTTP server plays it: sentry-sdk's real transport) without personal data or secrets."""

import gzip
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.helpers import closed_port
from tests.webhooks.helpers import process_env, wait_for

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2VudHJ5LXRlc3Qtc2lnbmF0dXJl"
SECRETS = {
    "Authorization": f"Bearer {BEARER}",
    "Cookie": "sessionid=session-cookie-value-77aa",
    "Stripe-Signature": "t=1,v1=stripe-signature-value-88bb",
    "X-Pubsub-Verification-Token": "pubsub-token-value-99cc",
}
EMAIL = "jane.doe@example.com"
BODY = json.dumps({"password": "body-password-value-11dd", "email": EMAIL}).encode()


class FakeSentry:
    """Sentry's envelope endpoint (POST /api/<project>/envelope/): keeps what it receives."""

    def __init__(self):
        self.envelopes: list[bytes] = []
        received = self.envelopes

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                received.append(data)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        """The error events among the envelopes' items (an envelope: header line, then item header
        and payload lines)."""
        found = []
        for envelope in self.envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def sentry():
    fake = FakeSentry()
    yield fake
    fake.stop()


@pytest.fixture
def server(tmp_path, sentry):
    port = closed_port()
    env = process_env(PORT=str(port), WEB_CONCURRENCY="1", DJANGO_SETTINGS_MODULE="tests.operations.sentry_settings",
                      SENTRY_DSN=f"http://publickey@127.0.0.1:{sentry.port}/1", SENTRY_ENVIRONMENT="test-env",
                      LOG_LEVEL="INFO")
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "python:config.gunicorn", "config.wsgi"],
                            cwd=BIN.parent.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health"), timeout=30, message="gunicorn to start")
        yield f"http://127.0.0.1:{port}", tmp_path / "gunicorn.log"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_an_error_in_a_view_reaches_sentry_without_personal_data_or_secrets(server, sentry):
    server, log_path = server
    response = requests.post(f"{server}/api/fails?email={EMAIL}&token=query-token-value-22ee", data=BODY,
                             headers={**SECRETS, "Content-Type": "application/json", "X-Request-ID": "sentry-req-1"},
                             timeout=10)
    assert response.status_code == 500 and response.headers["X-Request-ID"] == "sentry-req-1"

    [event] = wait_for(sentry.events, timeout=20, message="the error event at the fake Sentry")
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["value"] == "a bug"
    assert event["environment"] == "test-env" and event["tags"]["request_id"] == "sentry-req-1"
    request = event["request"]
    assert request["method"] == "POST" and request["url"].endswith("/api/fails")
    assert {k.lower() for k in request["headers"]} <= {"accept", "content-type", "content-length", "host",
                                                       "user-agent", "x-request-id"}
    assert "data" not in request and "query_string" not in request and "cookies" not in request
    assert "user" not in event
    # The view's own log line is a breadcrumb, with the address masked.
    messages = [crumb.get("message", "") for crumb in event.get("breadcrumbs", {}).get("values", [])]
    assert any(m.startswith("about to fail for") for m in messages), messages

    everything = b"\n".join(sentry.envelopes).decode()
    for secret in [BEARER, "session-cookie-value-77aa", "stripe-signature-value-88bb", "pubsub-token-value-99cc",
                   "body-password-value-11dd", "query-token-value-22ee", EMAIL]:
        assert secret not in everything, secret

    # The process's own lines: JSON with the request id, gunicorn's access line names it, no query string.
    # (gunicorn writes its access line after the answer has gone out)
    wait_for(lambda: "POST /api/fails" in log_path.read_text(), timeout=10, message="gunicorn's access line")
    log = log_path.read_text()
    error_line = next(json.loads(line) for line in log.splitlines()
                      if line.startswith("{") and '"django.request"' in line)
    assert error_line["request_id"] == "sentry-req-1" and error_line["level"] == "ERROR"
    access = next(line for line in log.splitlines() if "POST /api/fails" in line)
    assert "request_id=sentry-req-1" in access and "query-token-value-22ee" not in log
