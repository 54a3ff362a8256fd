"""The application as granian serves it (config/granian_wsgi.py's guard around config.wsgi), plus
`/slow`, which outlives any WEB_TIMEOUT, and `/seen`, which shows what a request's environ holds
(tests/config/test_granian.py)."""

import json
import os
import time

from config.granian_wsgi import WEB_TIMEOUT, ServerGuard, WithoutProcessEnvironment
from config.wsgi import django_application, with_fast_paths


def inner(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(60)
    if environ["PATH_INFO"] == "/seen":
        body = json.dumps({"scheme": environ["wsgi.url_scheme"],
                           "process_values": sorted(k for k, v in os.environ.items() if environ.get(k) == v),
                           "header": environ.get("HTTP_X_PROBE")}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return django_application(environ, start_response)


# As config/granian_wsgi.py builds it, with the test's paths in front of Django.
application = ServerGuard(with_fast_paths(WithoutProcessEnvironment(inner, os.environ)), timeout=WEB_TIMEOUT)
