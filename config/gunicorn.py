"""gunicorn's settings (Procfile: `gunicorn -c python:config.gunicorn config.wsgi`), from the same
environment as Django's, and gunicorn's own error answers in the API's JSON shape.

gunicorn answers some requests before Django sees them: a request line over `limit_request_line`
(414), too many or too large headers (431), unparsable HTTP (400), and a request still running when
the worker is killed at `timeout` (gunicorn's 500, answered here as 503 `timeout`). Those answers go
through `gunicorn.util.write_error`, replaced below. What cannot be shaped: a connection gunicorn
closes without answering (the client disconnected, a response already half sent when the timeout
struck) and anything in front of gunicorn (a proxy's own 502/504)."""

import ipaddress
import json
import os
import uuid
from pathlib import Path

import environ
from gunicorn import util

env = environ.Env()
environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)

bind = f"0.0.0.0:{env.int('PORT', default=8088)}"
workers = env.int("WEB_CONCURRENCY", default=3)
worker_class = "sync"
timeout = env.int("GUNICORN_TIMEOUT", default=120)  # long enough for a streamed 1M-row CSV export
graceful_timeout = 30
accesslog = "-"
# The path without its query string (a push URL's ?token= must not reach the logs), the request id
# Django answered with (docs/operations.md "Logs").
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s request_id=%({x-request-id}o)s'
limit_request_line = 4094  # gunicorn's default, named here because the 414 message quotes it
# X-Forwarded-Proto (https behind a TLS-terminating proxy) only from TRUSTED_PROXIES, like Django's
# view of client addresses (gunicorn's default would trust loopback, where a sidecar may sit).
forwarded_allow_ips = ",".join(str(ipaddress.ip_network(n.strip(), strict=False))
                               for n in env.list("TRUSTED_PROXIES", default=[]) if n.strip())

_ANSWERS = {
    400: ("bad_request", "The request is not valid HTTP."),
    403: ("forbidden", "The request was refused."),
    414: ("request_line_too_long", f"The request line (method, path and query) is longer than "
                                   f"{limit_request_line} bytes."),
    417: ("expectation_failed", "Only 'Expect: 100-continue' is supported."),
    431: ("headers_too_large", "The request's headers are too many or too large."),
    501: ("not_implemented", "This transfer coding is not supported."),
}
_SERVER_ERROR = ("server_error", "The server failed to answer this request; it was logged.")
_timed_out = False  # set in a worker by worker_abort: the arbiter kills workers that exceed `timeout`


def child_exit(server, worker):
    # Multiprocess metrics (docs/operations.md "Metrics"): a finished worker's live gauges leave the sum.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Imported here, not above: prometheus-client picks its mode from the environment at import,
        # which must include .env (read above) before any worker imports it.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_abort(worker):
    global _timed_out
    _timed_out = True


def json_error_response(status: int, reason: str) -> bytes:
    """The bytes gunicorn sends for one of its own errors: the API's `{"error": {"code", "message"}}`."""
    if status == 500 and _timed_out:
        status, reason = 503, "Service Unavailable"
        code, message = "timeout", f"The request took longer than {timeout} s and was stopped; retry later."
    else:
        code, message = _ANSWERS.get(status, _SERVER_ERROR)
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Cache-Control: no-store\r\nX-Request-ID: {uuid.uuid4().hex}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock, status_int, reason, mesg):
    # gunicorn's message (`mesg`) quotes the offending input or an exception: logged by gunicorn, not sent.
    util.write_nonblock(sock, json_error_response(status_int, reason))


util.write_error = write_json_error
