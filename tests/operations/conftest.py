import io
import json
import logging

import pytest

from operations.logging import ContextFilter, JsonFormatter

# The stores' fakes, for the full flow of test_log_secrets.py.
from tests.providers.google.conftest import fake_play, google  # noqa: F401
from tests.providers.stripe.conftest import fake_stripe, monthly  # noqa: F401
from tests.providers.xsolla.conftest import xsolla  # noqa: F401

# A real worker, for test_worker_logs.py.
from tests.webhooks.conftest import queued_tasks, start_worker  # noqa: F401


class Captured:
    """Every line logged while the fixture is active, at DEBUG: the records as logged (before any
    redaction: what the log calls themselves put in) and the production JSON lines."""

    def __init__(self):
        self.records: list[logging.LogRecord] = []
        self.stream = io.StringIO()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.startswith("{")]

    def raw_text(self) -> str:
        formatter = logging.Formatter()
        parts = []
        for record in self.records:
            parts.append(record.getMessage())
            if record.exc_info:
                parts.append(formatter.formatException(record.exc_info))
        return "\n".join(parts)


class _Recorder(logging.Handler):
    def __init__(self, captured: Captured):
        super().__init__(logging.DEBUG)
        self.captured = captured

    def emit(self, record):
        self.captured.records.append(record)


@pytest.fixture
def captured_logs():
    captured = Captured()
    json_handler = logging.StreamHandler(captured.stream)
    json_handler.setFormatter(JsonFormatter())
    json_handler.addFilter(ContextFilter())
    recorder = _Recorder(captured)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(json_handler)
    root.addHandler(recorder)
    try:
        yield captured
    finally:
        root.removeHandler(json_handler)
        root.removeHandler(recorder)
        root.setLevel(level)
