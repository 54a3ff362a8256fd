"""Helpers of the webhook tests: posting signed events, real worker and server processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection

from tests.helpers import closed_port

from .adapter import NAME, SIGNATURE_HEADER, sign

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def post(client, body: bytes, *, signature: str | None = None, provider: str = NAME):
    extra = {}
    if signature is None:
        signature = sign(body)
    if signature:
        extra[f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}"] = signature
    return client.post(f"/webhooks/{provider}", data=body, content_type="application/json", **extra)


def http_post(base_url: str, body: bytes, **kw):
    return requests.post(f"{base_url}/webhooks/{NAME}", data=body, timeout=10,
                         headers={SIGNATURE_HEADER: sign(body), "Content-Type": "application/json"}, **kw)


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def process_env(**overrides) -> dict:
    """Environment of a worker or server started by a test: the test database, the test Redis db."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update({
        "BILLING_TESTING": "1",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                        f"/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "DJANGO_SETTINGS_MODULE": "tests.settings",  # with the test adapter
        "WEBHOOK_RETRY_BASE_SECONDS": "0.05",
        "WEBHOOK_RETRY_MAX_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    })
    env.update(overrides)
    return env


class Worker:
    """`celery -A config worker` (one process) on the test database and the test Redis db; all queues
    unless `queues` names some (as the Procfile's `-Q`)."""

    def __init__(self, log_dir: Path, *, queues: str | None = None, **env):
        self.queues = ["-Q", queues] if queues else []
        self.env = process_env(**env)
        self.log = log_dir / f"worker-{time.monotonic_ns()}.log"
        self.proc = None

    def start(self):
        cmd = [str(BIN / "celery"), "-A", "config", "worker", "-c", "1", "-P", "prefork", "--without-gossip",
               "--without-mingle", "--without-heartbeat", "-l", "INFO", "-n", f"hooktest{time.monotonic_ns()}@%h",
               *self.queues]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: b"ready." in self.log.read_bytes() or self.proc.poll() is not None, timeout=30,
                     message="the worker to start")
            assert self.proc.poll() is None, self.log.read_text()
        except BaseException:
            self.kill()  # never leave a process behind
            raise
        return self

    def kill(self):
        """SIGKILL the whole worker (main process and its child): a crash, not a shutdown."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class Server:
    """gunicorn serving the project in its own process(es)."""

    def __init__(self, log_dir: Path, *, args: tuple = ("-w", "1"), **env):
        self.args = list(args)
        self.port = closed_port()  # nothing listens there yet: gunicorn binds it
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"server-{self.port}.log"
        self.env = process_env(**env)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{self.port}", "--timeout", "30", *self.args],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            try:
                return requests.get(f"{self.base_url}/webhooks/{NAME}", timeout=5).status_code == 405
            except requests.RequestException:
                return self.proc.poll() is not None

        try:
            wait_for(up, timeout=30, message="the server to start")
            assert self.proc.poll() is None, self.log.read_text()
        except BaseException:
            self.stop()  # never leave a process behind
            raise
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
