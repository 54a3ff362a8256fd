"""Cross-check with a third-party emulator: localstripe (PyPI) as a subprocess. It suffices for a
customer, a setup intent and signed webhook delivery (it has no Prices and few lifecycle events,
PROVIDERS.md trap 27), so that is all this test asks of it."""

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from accounts.models import Subscriber
from billing.providers.stripe import services

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def localstripe():
    binary = shutil.which("localstripe") or str(Path(sys.executable).with_name("localstripe"))
    port = _free_port()
    # --from-scratch: every localstripe on a machine shares one pickle file otherwise (trap 27).
    proc = subprocess.Popen([binary, "--port", str(port), "--from-scratch"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}/v1/customers", timeout=0.5, auth=("sk_test_x12345", ""))
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("localstripe did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def receiver():
    deliveries = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            deliveries.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe", deliveries
    server.shutdown()
    server.server_close()


def test_customer_setup_intent_and_signed_delivery_against_localstripe(localstripe, receiver, settings,
                                                                      stripe_adapter):
    settings.STRIPE_API_BASE = localstripe
    settings.STRIPE_SECRET_KEY = "sk_test_" + "L" * 24
    settings.STRIPE_WEBHOOK_SECRET = "whsec_localstripe"
    url, deliveries = receiver
    requests.post(f"{localstripe}/_config/webhooks/billing", data={"url": url, "secret": "whsec_localstripe"},
                  timeout=5).raise_for_status()

    intent = services.setup_intent_create(user_id="42")
    assert intent.customer_id.startswith("cus_") and intent.client_secret
    assert Subscriber.objects.get(external_id="42").stripe_customer_id == intent.customer_id
    assert services.setup_intent_create(user_id="42").customer_id == intent.customer_id  # reused

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(b'"customer.created"' in body for _, body in deliveries):
        time.sleep(0.2)
    headers, body = next((h, b) for h, b in deliveries if b'"customer.created"' in b)
    verified = stripe_adapter.authenticate(headers, body, {})  # localstripe's own signature, verified
    assert verified.event_type == "customer.created"
    assert verified.payload["data"]["object"]["id"] == intent.customer_id
    assert json.loads(body)["data"]["object"]["metadata"] == {"user_id": "42"}
