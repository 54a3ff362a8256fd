"""The application as gunicorn serves it, plus `/slow`, which outlives any worker timeout
(tests/config/test_gunicorn.py)."""

import time

from config.wsgi import application as billing_application


def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(60)
    return billing_application(environ, start_response)
