"""POST /webhooks/<provider>, answered before Django builds a request (config/wsgi.py wraps the app).

The same work as the view (ingest.delivery_answer: the body size limit, authentication through the
adapter, the event stored before any 2xx, the answer in the store's dialect, the rejection counters,
metrics and log lines), without the middleware chain, which is for browsers (sessions, CSRF, auth,
messages, CSP) and cost about a third of the answer path's Python. Kept from it: the allowed Host
(anything else goes to the full path, which refuses it), X-Request-ID on the answer and on every log
line, the request signals (Django's connection management: obsolete or broken connections are closed
as for any request), and django.request's line for a 4xx/5xx answer. As on the check API's fast path,
the browser-only headers (CSP, X-Frame-Options, Referrer-Policy, COOP) are not added to a store's answer.

Not taken here (the full path answers, unchanged): other methods (the 405 with its Allow header), a
Host that is not plainly allowed, a plain-HTTP request while SECURE_SSL_REDIRECT is on.

Django checks the database connection (SELECT 1) at the first query of every request; here an open
connection is used as is (one round trip fewer per webhook). If it turns out broken (the answer is a 5xx
and the connection saw an error), it is closed and the request is answered by the full path with the
body already read, whose check reconnects: the store never sees a 503 the full path would not give.
An exception (a bug) is logged and the request answered by the full path the same way.
Correctness: tests/webhooks/test_fast_path.py (same answer, same stored row as the full path)."""

import io
import logging
import re

from django.conf import settings
from django.core import signals
from django.core.handlers.wsgi import LimitedStream, get_bytes_from_wsgi
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import QueryDict
from django.http.request import HttpHeaders
from django.utils.log import log_response

from billing.api.check_wsgi import host_allowed
from operations.log_context import bind, clear
from operations.request_id import HEADER, request_id_from

from . import ingest, views

logger = logging.getLogger(__name__)

# webhooks/urls.py's paths: `<slug:provider>`, with or without the trailing slash.
WEBHOOK_PATH = re.compile(r"/webhooks/(?P<provider>[-a-zA-Z0-9_]+)/?")


class WebhookWSGIFastPath:
    """WSGI middleware: POSTed webhooks answered by ingest.py directly, anything else by the wrapped app."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            match = WEBHOOK_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None and host_allowed(environ) and not _redirected_to_https(environ):
                return self._answer(environ, start_response, match["provider"])
        return self.application(environ, start_response)

    def _answer(self, environ, start_response, provider: str):
        request_id = request_id_from(environ)
        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            clear()
            bind(request_id=request_id)
            connection = connections[DEFAULT_DB_ALIAS]
            if connection.connection is not None:  # open, and request_started closed it if unusable or obsolete
                connection.health_check_done = True
            try:
                content_length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                content_length = 0  # as Django's request: nothing read (delivery_answer refuses the header)
            body = _Recorded(LimitedStream(environ["wsgi.input"], content_length))
            try:
                answer = ingest.delivery_answer(
                    provider, method="POST", content_length=environ.get("CONTENT_LENGTH"), read=body.read,
                    headers=HttpHeaders(environ), query=QueryDict(get_bytes_from_wsgi(environ, "QUERY_STRING", "")),
                    remote_addr=environ.get("REMOTE_ADDR"))
            except Exception:  # a bug must not cost the answer: the full path (storing again is a duplicate)
                logger.exception("webhook fast path failed; answered by the full path")
                return self._full_path(environ, start_response, body.data)
            if answer.status >= 500 and connection.errors_occurred:
                # A connection that broke since the last request: the full path checks, reconnects, answers.
                logger.warning("webhook fast path: the database connection broke; answered by the full path")
                connection.close()
                return self._full_path(environ, start_response, body.data)
            response = views._render(answer)
            if response.status_code >= 400:
                log_response("%s: %s", response.reason_phrase, environ.get("PATH_INFO", ""), response=response)
            content = response.content
            headers = [*response.items(), ("X-Content-Type-Options", "nosniff"),
                       ("Content-Length", str(len(content))), (HEADER, request_id)]
            start_response(f"{response.status_code} {response.reason_phrase}", headers)
            return [content]
        finally:
            signals.request_finished.send(sender=self.__class__)

    def _full_path(self, environ, start_response, body: bytes):
        return self.application({**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))},
                                start_response)


class _Recorded:
    """The request body as read (for a retry through the full path)."""

    def __init__(self, stream):
        self.stream = stream
        self.data = b""

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.data += chunk
        return chunk


def _redirected_to_https(environ) -> bool:
    """SecurityMiddleware would redirect this request (SECURE_SSL_REDIRECT on, the request not HTTPS)."""
    if not settings.SECURE_SSL_REDIRECT:
        return False
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header:
        name, value = proxy_header
        given = environ.get(name)
        if given is not None:
            return given.split(",", 1)[0].strip() != value
    return environ.get("wsgi.url_scheme") != "https"
