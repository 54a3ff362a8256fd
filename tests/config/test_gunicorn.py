"""gunicorn's own answers (Procfile: `gunicorn -c python:config.gunicorn`) in the API's JSON error shape."""

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import closed_port
from tests.webhooks.helpers import process_env, wait_for

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(tmp_path):
    port = closed_port()
    env = process_env(PORT=str(port), WEB_CONCURRENCY="1", GUNICORN_TIMEOUT="2")
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "python:config.gunicorn", "tests.config.slow_wsgi"],
                            cwd=BIN.parent.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/health"), timeout=30, message="gunicorn to start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def raw_request(port: int, request_line: bytes) -> tuple[str, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_a_request_line_too_long_is_414_in_the_json_shape(server):
    status, headers, body = raw_request(server, b"GET /api/subscriptions/check/" + b"1" * 5000 + b" HTTP/1.1")
    assert status == "HTTP/1.1 414 URI Too Long"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": {
        "code": "request_line_too_long",
        "message": "The request line (method, path and query) is longer than 4094 bytes."}}


def test_a_request_that_is_not_http_is_400_in_the_json_shape(server):
    status, headers, body = raw_request(server, b"GARBAGE\x01 / HTTP/1.1")
    assert status.startswith("HTTP/1.1 400") and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and "GARBAGE" not in error["message"]  # no echo of the input


def test_a_worker_timeout_is_503_in_the_json_shape(server):
    started = time.monotonic()
    response = requests.get(f"http://127.0.0.1:{server}/slow", timeout=30)
    assert time.monotonic() - started < 20  # the worker was killed at its 2 s timeout, not after 60 s
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "timeout"
    # The arbiter starts a fresh worker, which answers as usual.
    wait_for(lambda: _answers(f"http://127.0.0.1:{server}/health"), timeout=30, message="a new worker")
