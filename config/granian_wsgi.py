"""The WSGI application granian serves (the Procfile's `web`: `python -m config.web`), with what granian
leaves to the application and config/gunicorn.py gives gunicorn (docs/deploy.md "The web server"):

- the process environment kept out of Django's requests: granian copies os.environ (SECRET_KEY,
  DATABASE_URL, .env's values) into every WSGI environ, where Django would put it in request.META and an
  error report could show it;
- `X-Forwarded-Proto` believed from TRUSTED_PROXIES only (gunicorn's `forwarded_allow_ips`), judged as
  accounts/networks.py judges the proxies' other headers;
- a limit on a running request (WEB_TIMEOUT): a watchdog thread ends the worker, logging the request and
  where it was stuck, and granian starts a fresh one (`--respawn-failed-workers`), as gunicorn's arbiter
  kills a sync worker at its timeout;
- an access log line (logger `access`) naming the request id the service answered with;
- prometheus-client's multiprocess files: a worker's live gauges leave the sum when it ends, and files
  of workers that died without saying so are cleared when a new worker starts."""

import atexit
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import environ as django_environ

from accounts.networks import from_trusted_proxy
from config.wsgi import django_application, with_fast_paths

logger = logging.getLogger("config.web")
access_logger = logging.getLogger("access")

_env = django_environ.Env()
WEB_TIMEOUT = _env.int("WEB_TIMEOUT", default=_env.int("GUNICORN_TIMEOUT", default=120))


class RunningRequests:
    """The requests this worker is running, and a watchdog that ends the worker when one has run longer
    than `timeout` seconds (a stuck query, a store that never answers): its thread cannot be stopped from
    outside, so the process goes, as gunicorn's sync worker does, and granian starts another."""

    def __init__(self, timeout: float, *, exit=os._exit):
        self.timeout = timeout
        self.exit = exit
        self.running: dict[int, tuple[float, str]] = {}  # thread id → (monotonic start, "GET /path id=…")
        self._pid = None
        self._lock = threading.Lock()

    def begin(self, what: str) -> None:
        if self._pid != os.getpid():  # first request of this process (granian may fork after import)
            self._start()
        self.running[threading.get_ident()] = (time.monotonic(), what)

    def end(self) -> None:
        self.running.pop(threading.get_ident(), None)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self.running = {}
            threading.Thread(target=self._watch, name="web-timeout-watchdog", daemon=True).start()

    def _watch(self) -> None:
        tick = max(0.05, min(1.0, self.timeout / 4))
        while True:
            time.sleep(tick)
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        for thread_id, (started, what) in list(self.running.items()):
            if now - started > self.timeout:
                frame = sys._current_frames().get(thread_id)
                stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
                logger.error("request ran over WEB_TIMEOUT (%s s): %s; ending this worker (pid %s), a new one "
                             "starts\n%s", self.timeout, what, os.getpid(), stack)
                worker_ends()
                for handler in logging.getLogger().handlers:
                    handler.flush()
                self.exit(70)  # EX_SOFTWARE; granian respawns a failed worker
                return


class ServerGuard:
    """WSGI middleware in front of config.wsgi's application, for granian."""

    def __init__(self, application, *, timeout: float):
        self.application = application
        self.requests = RunningRequests(timeout)

    def __call__(self, environ, start_response):
        if "HTTP_X_FORWARDED_PROTO" in environ and from_trusted_proxy(environ.get("REMOTE_ADDR", "")):
            proto = environ["HTTP_X_FORWARDED_PROTO"].split(",", 1)[0].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
        answer = _Answer(start_response)
        line = f'"{environ.get("REQUEST_METHOD")} {environ.get("PATH_INFO")} {environ.get("SERVER_PROTOCOL")}"'
        if not line.isprintable():  # a decoded %0A in the path must not start a forged log line
            line = line.encode("unicode_escape").decode("ascii")
        self.requests.begin(line)
        started = time.perf_counter()
        try:
            body = self.application(environ, answer)
        except BaseException:
            self.requests.end()
            raise
        if isinstance(body, list):
            self._finished(environ, answer, line, started)
            return body
        return _Streamed(body, lambda: self._finished(environ, answer, line, started))

    def _finished(self, environ, answer: "_Answer", line: str, started: float) -> None:
        self.requests.end()
        if access_logger.isEnabledFor(logging.INFO):
            # gunicorn's access_log_format (config/gunicorn.py): the path without its query string.
            access_logger.info("%s %s %s %s %.6f request_id=%s", environ.get("REMOTE_ADDR", "-"), line, answer.status,
                               answer.length or "-", time.perf_counter() - started, answer.request_id or "-")


class WithoutProcessEnvironment:
    """WSGI middleware: the keys granian copied from os.environ taken out of the environ. In front of
    Django only (config.wsgi's fast paths never put the environ anywhere), where request.META would
    carry them into error reports; ~4 µs per request with 40 variables."""

    def __init__(self, application, process_env):
        self.application = application
        self.process_env = dict(process_env)

    def __call__(self, environ, start_response):
        for key, value in self.process_env.items():
            if environ.get(key) == value:  # granian's copy of os.environ, not the request's own
                del environ[key]
        return self.application(environ, start_response)


class _Answer:
    """start_response, noting the status, length and X-Request-ID for the access log."""

    __slots__ = ("length", "request_id", "start_response", "status")

    def __init__(self, start_response):
        self.start_response = start_response
        self.status = self.length = self.request_id = None

    def __call__(self, status, headers, exc_info=None):
        self.status = status.split(" ", 1)[0]
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length":
                self.length = value
            elif lowered == "x-request-id":
                self.request_id = value
        return self.start_response(status, headers, exc_info)


class _Streamed:
    """A response body that is not a list (Django's responses, a streamed CSV export): the request runs
    until granian has sent it all and closed it."""

    def __init__(self, body, finished):
        self.body = body
        self.finished = finished

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.finished()


def worker_ends(pid: int | None = None) -> None:
    """Multiprocess metrics (docs/operations.md "Metrics"): a finished worker's live gauges leave the sum."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


def clear_dead_workers(directory: str) -> None:
    """The live-gauge files of processes that are gone (a worker killed without running its exit): what
    gunicorn's arbiter does in child_exit, done by each new worker since granian has no such hook."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            worker_ends(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    clear_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    atexit.register(worker_ends)  # the pid at exit: a process forked after this import is itself

application = ServerGuard(with_fast_paths(WithoutProcessEnvironment(django_application, os.environ)),
                          timeout=WEB_TIMEOUT)
