"""The `web` process (Procfile: `python -m config.web`): granian, with what config/granian_wsgi.py adds to
it (docs/deploy.md "The web server"). Served for real: granian with config/web.py's options."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from config.web import command
from tests.helpers import closed_port
from tests.webhooks.helpers import process_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def server(tmp_path, monkeypatch):
    port = closed_port()
    env = process_env(PORT=str(port), WEB_CONCURRENCY="1", WEB_TIMEOUT="2", TRUSTED_PROXIES="127.0.0.1/32",
                      LOG_LEVEL="INFO", LOG_FORMAT="text", WEB_HOST="127.0.0.1", PROCESS_ONLY_PROBE="s3cr3t-value")
    for name in ("PORT", "WEB_CONCURRENCY", "WEB_HOST", "LOG_LEVEL"):
        monkeypatch.setenv(name, env[name])
    argv = command()
    argv[1] = "tests.config.slow_granian:application"  # config.web's options, the test's extra paths
    log_path = tmp_path / "granian.log"
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/health"), timeout=30, message="granian to start")
        yield base, log_path
    finally:
        proc.terminate()
        proc.wait(timeout=40)


def seen(base: str, source: str = "127.0.0.1", **headers) -> dict:
    """GET /seen from a given loopback address (127.0.0.1 is the trusted proxy; 127.0.0.2 is not)."""
    port = int(base.rsplit(":", 1)[1])
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(f"GET /seen HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{lines}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2])


def test_the_app_is_served_and_the_access_log_names_the_request_id(server):
    base, log_path = server
    response = requests.get(f"{base}/health?token=not-for-the-logs", timeout=10)
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    wait_for(lambda: f"request_id={request_id}" in log_path.read_text(), timeout=10, message="the access line")
    line = next(line for line in log_path.read_text().splitlines() if f"request_id={request_id}" in line)
    assert '"GET /health HTTP/1.1" 200' in line and "not-for-the-logs" not in line
    forged = requests.get(f"{base}/nowhere%0Arequest_id=forged", timeout=10)
    wait_for(lambda: forged.headers["X-Request-ID"] in log_path.read_text(), timeout=10, message="the 404's line")
    assert not any(line.startswith("request_id=forged") for line in log_path.read_text().splitlines())
    assert '"GET /nowhere\\nrequest_id=forged HTTP/1.1" 404' in log_path.read_text()


def test_the_process_environment_stays_out_of_requests(server):
    base, _ = server
    answer = seen(base, **{"X-Probe": "kept"})
    assert answer["process_values"] == []  # granian copies os.environ into each environ; none of it is left
    assert answer["header"] == "kept"  # the request's own headers are


def test_x_forwarded_proto_is_believed_from_trusted_proxies_only(server):
    base, _ = server
    assert seen(base, **{"X-Forwarded-Proto": "https"})["scheme"] == "https"
    assert seen(base, source="127.0.0.2", **{"X-Forwarded-Proto": "https"})["scheme"] == "http"
    assert seen(base)["scheme"] == "http"


def test_a_request_over_web_timeout_ends_its_worker_and_a_new_one_answers(server):
    base, log_path = server
    started = time.monotonic()
    with pytest.raises(requests.RequestException):  # the worker is gone: no answer, the connection drops
        requests.get(f"{base}/slow", timeout=30)
    assert time.monotonic() - started < 20  # ended at its 2 s limit, not after 60 s
    text = log_path.read_text()
    assert "request ran over WEB_TIMEOUT (2 s): \"GET /slow HTTP/1.1\"" in text
    assert "time.sleep(60)" in text  # where it was stuck
    wait_for(lambda: _answers(f"{base}/health"), timeout=30, message="a new worker")



def test_a_request_head_far_over_64_kib_is_refused_with_431(server):
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    # The read buffer is 64 KiB; granian's check may let a head of up to twice that through, not 160 KB.
    headers = b"".join(b"X-Padding-%d: %s\r\n" % (i, b"a" * 8000) for i in range(20))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 431 ")
    assert requests.get(f"{base}/health", timeout=10).status_code == 200  # a normal request is served


def test_a_new_worker_clears_the_live_gauges_of_workers_that_died(tmp_path, monkeypatch):
    """granian has no exit hook in its supervisor: a killed worker's live-gauge file would stay in the
    multiprocess sum for good; each new worker clears those of processes that are gone."""
    from config.granian_wsgi import clear_dead_workers

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    for pid in (gone.pid, os.getpid()):
        for name in (f"gauge_livesum_{pid}.db", f"counter_{pid}.db"):
            (tmp_path / name).write_bytes(b"")
    clear_dead_workers(str(tmp_path))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f"counter_{gone.pid}.db", f"counter_{os.getpid()}.db", f"gauge_livesum_{os.getpid()}.db"])
