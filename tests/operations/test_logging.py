"""Structured logs (docs/operations.md "Logs"): the request id of every answer and every line of its
request, the task and event ids of a worker task's lines, and no configured secret in any line."""

import json
import logging
import re
import sys

import pytest
from django.test import Client

from config.gunicorn import json_error_response
from operations.logging import JsonFormatter, TextFormatter
from tests.helpers import deliver
from tests.webhooks.adapter import BROKEN_KEY, event_body, sign
from webhooks.models import WebhookEvent
from webhooks.tasks import process_event

pytestmark = pytest.mark.django_db

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def logging_urls(settings):
    settings.ROOT_URLCONF = "tests.operations.urls_logging"


def request_lines(captured, request_id):
    return [line for line in captured.lines() if line.get("request_id") == request_id]


def test_the_callers_request_id_is_answered_and_on_every_line_of_the_request(logging_urls, captured_logs):
    response = Client().get("/api/logs", HTTP_X_REQUEST_ID="req-4711-abc")
    assert response.status_code == 200 and response["X-Request-ID"] == "req-4711-abc"
    lines = captured_logs.lines()
    assert [line["message"] for line in lines if line["logger"] == "tests.operations.view"] == [
        "inside the view", "inside the view, a warning"]
    assert lines and all(line.get("request_id") == "req-4711-abc" for line in lines), lines
    first = lines[0]
    assert first["level"] == "INFO" and first["time"].endswith("+00:00")


def test_a_failing_view_answers_with_the_id_and_its_error_line_carries_it(logging_urls, captured_logs):
    response = Client(raise_request_exception=False).get("/api/fails")
    request_id = response["X-Request-ID"]
    assert response.status_code == 500 and HEX32.fullmatch(request_id)
    lines = request_lines(captured_logs, request_id)
    assert [line["message"] for line in lines][:1] == ["about to fail for nobody"]
    error = next(line for line in lines if line["logger"] == "django.request")
    assert error["level"] == "ERROR" and "RuntimeError: a bug" in error["exc_info"]
    assert all(line.get("request_id") == request_id for line in captured_logs.lines())


@pytest.mark.parametrize("given", ["", "x" * 129, "bad\nid", "evil id", "ünicode"])
def test_an_absent_or_insane_request_id_is_replaced_by_a_fresh_one(logging_urls, given):
    headers = {"HTTP_X_REQUEST_ID": given} if given else {}
    first = Client().get("/api/logs", **headers)["X-Request-ID"]
    second = Client().get("/api/logs", **headers)["X-Request-ID"]
    assert HEX32.fullmatch(first) and HEX32.fullmatch(second) and first != second


def test_djangos_line_about_a_refused_request_carries_its_id(captured_logs):
    response = Client().get("/api/subscriptions/check/42", REMOTE_ADDR="203.0.113.7", HTTP_X_REQUEST_ID="r-401")
    assert response.status_code == 401 and response["X-Request-ID"] == "r-401"
    refused = [line for line in captured_logs.lines() if line["logger"] == "django.request"]
    assert [line["message"] for line in refused] == ["Unauthorized: /api/subscriptions/check/42"]
    assert refused[0]["request_id"] == "r-401" and refused[0]["status_code"] == 401
    logging.getLogger("tests.after").warning("between requests")
    assert "request_id" not in captured_logs.lines()[-1]


def test_the_check_api_fast_path_answers_with_the_request_id(db):
    answered = Client().get("/api/subscriptions/check/42", HTTP_X_REQUEST_ID="check-1")
    assert answered.status_code == 200 and answered["X-Request-ID"] == "check-1"
    refused = Client().get("/api/subscriptions/check/42", REMOTE_ADDR="203.0.113.7")
    assert refused.status_code == 401 and HEX32.fullmatch(refused["X-Request-ID"])


def test_404_and_health_answer_with_a_request_id(db):
    assert HEX32.fullmatch(Client().get("/no/such/page")["X-Request-ID"])
    assert Client().get("/health", HTTP_X_REQUEST_ID="probe-1")["X-Request-ID"] == "probe-1"


def test_a_tasks_lines_carry_its_task_id_and_the_webhook_event_id(captured_logs, redis_client):
    body = event_body("evt-1", type="needs_fix")
    event = deliver("hooktest", body, {"X-Hooktest-Signature": sign(body)}, process=False).event
    redis_client.set(BROKEN_KEY, "1")  # the attempt fails transiently: a retry is logged
    result = process_event.apply(args=[event.pk])
    assert result.successful()
    lines = [line for line in captured_logs.lines() if line.get("task_id") == result.id]
    retry = next(line for line in lines if line["logger"] == "webhooks.retries")
    assert retry["event_id"] == event.pk and retry["task_name"] == "webhooks.tasks.process_event"
    assert retry["level"] == "WARNING" and "retry in" in retry["message"]
    # After the task, its ids are gone from the context.
    logging.getLogger("tests.after").warning("after the task")
    after = captured_logs.lines()[-1]
    assert after["message"] == "after the task" and "task_id" not in after and "event_id" not in after
    assert WebhookEvent.objects.get(pk=event.pk).attempts == 1


def _record(message, *args, exc_info=None, **extra):
    record = logging.LogRecord("billing.x", logging.INFO, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_formatters_mask_secrets_and_credentials_wherever_they_appear(settings):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_" + "q" * 24
    settings.XSOLLA_API_KEY = "xsolla-key-with-quote\"and-backslash\\"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"
    try:
        raise ValueError(f"key {settings.XSOLLA_API_KEY} refused")
    except ValueError:
        exc_info = sys.exc_info()
    record = _record("headers %s, url %s, secret %s", {"Authorization": "Api-Key bk_live.abcdef123456"},
                     "/webhooks/google?token=pubsub-shared-token", settings.STRIPE_WEBHOOK_SECRET,
                     exc_info=exc_info, note=f"Bearer {jwt}")
    out_json = JsonFormatter().format(record)
    line = json.loads(out_json)  # still one valid JSON object
    out_text = TextFormatter().format(record)
    for out in (out_json, out_text):
        for secret in ("bk_live.abcdef123456", "pubsub-shared-token", "q" * 24, jwt, "xsolla-key-with-quote"):
            assert secret not in out, (secret, out)
    assert "[redacted]" in line["message"] and "[redacted]" in line["exc_info"] and line["note"] == "Bearer [redacted]"


def test_gunicorns_own_error_answers_carry_a_fresh_request_id():
    heads = [json_error_response(431, "Request Header Fields Too Large").partition(b"\r\n\r\n")[0].decode()
             for _ in range(2)]
    ids = [re.search(r"\r\nX-Request-ID: (\w+)\r\n", head)[1] for head in heads]
    assert all(HEX32.fullmatch(i) for i in ids) and ids[0] != ids[1]
