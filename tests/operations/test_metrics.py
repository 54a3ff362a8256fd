"""GET /metrics: who may scrape it, every family after a flow of webhooks, checks, store calls and a
beat run, and counts made in a real Celery worker process (multiprocess mode)."""

import ast
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billing.models import Outbox
from billing.snapshots import Provider
from billing.tasks import relay_outbox
from tests.factories import SubscriptionFactory
from tests.helpers import deliver
from tests.providers.google.conftest import fake_play, google, load_sequence, push, token_of  # noqa: F401
from tests.webhooks.adapter import BROKEN_KEY, SIGNATURE_HEADER, event_body, sign
from tests.webhooks.conftest import queued_tasks, start_worker  # noqa: F401
from tests.webhooks.helpers import post, wait_for
from webhooks.models import WebhookEvent

OUTSIDE = "203.0.113.9"


def scrape(**headers) -> dict:
    """The samples of GET /metrics from a trusted address: {(name, (label, value)…): value}."""
    response = Client().get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {(s.name, *sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, *sorted(labels.items())), 0.0)


def hooktest(body: bytes, signature: str | None = None):
    return deliver("hooktest", body, {SIGNATURE_HEADER: signature or sign(body)})


# --- Who may scrape ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_outside_caller_without_a_configured_token_is_refused(settings):
    settings.METRICS_TOKEN = ""
    response = Client(REMOTE_ADDR=OUTSIDE).get("/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert b"billing_" not in response.content


@pytest.mark.django_db
def test_outside_caller_needs_the_right_token(settings):
    settings.METRICS_TOKEN = "metrics-token-5f1c"
    outside = Client(REMOTE_ADDR=OUTSIDE)

    missing = outside.get("/metrics")
    wrong = outside.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-0000")
    other_scheme = outside.get("/metrics", HTTP_AUTHORIZATION="Api-Key metrics-token-5f1c")
    right = outside.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-5f1c")

    for refused in (missing, wrong, other_scheme):
        assert refused.status_code == 401
        assert set(refused.json()["error"]) == {"code", "message"}
        assert refused["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["error"]["code"] == "not_authenticated"
    assert wrong.json()["error"]["code"] == "invalid_token"
    assert right.status_code == 200
    assert b"# TYPE billing_webhooks_received_total counter" in right.content


@pytest.mark.django_db
def test_trusted_network_scrapes_without_a_token_but_a_wrong_token_is_still_refused(settings):
    settings.METRICS_TOKEN = "metrics-token-5f1c"
    assert Client().get("/metrics").status_code == 200  # 127.0.0.1: CHECK_API_TRUSTED_NETWORKS
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert Client().post("/metrics").status_code == 405


# --- Every family after a flow -----------------------------------------------------------------

@pytest.mark.django_db
def test_every_family_after_webhooks_checks_store_calls_and_a_beat_run(settings, google, redis_client):  # noqa: F811
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_RETRY_HORIZON_HOURS = 0
    before = scrape()

    # Webhooks: applied, repeated, ignored, refused, failed for good, retried, dead.
    assert hooktest(event_body("evt_m1", subscription_id="sub_M1", user_id="u-metrics")).event.status == "processed"
    assert hooktest(event_body("evt_m1", subscription_id="sub_M1", user_id="u-metrics")).event is None
    hooktest(event_body("evt_m2", type="test"))
    assert hooktest(event_body("evt_m3"), signature="0" * 64).response.status_code == 400
    assert hooktest(event_body("evt_m4", type="permanent")).event.status == "failed"
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_RETRY_HORIZON_HOURS = 1
    assert hooktest(event_body("evt_m5", type="flaky", fail_times=1)).event.status == "received"
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_RETRY_HORIZON_HOURS = 0
    redis_client.set(BROKEN_KEY, "1")
    assert hooktest(event_body("evt_m6", type="needs_fix", subscription_id="sub_M6")).event.status == "dead"

    # A Google purchase: the Play API read and acknowledged (store calls, budget), and one more
    # purchase we hold that is not acknowledged yet, due in two hours.
    step = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
    google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
    push(google, step["developerNotification"])
    SubscriptionFactory(provider=Provider.GOOGLE, provider_subscription_id="gp-token-unacked",
                        acknowledgement_due_at=timezone.now() + timedelta(hours=2), acknowledged_at=None)

    # Checks: a miss (computed from PostgreSQL, cached), then a hit; one refused.
    assert Client().get("/api/subscriptions/check/u-metrics").json()["is_subscribed"] is True
    assert Client().get("/api/subscriptions/check/u-metrics").status_code == 200
    assert Client(REMOTE_ADDR=OUTSIDE).get("/api/subscriptions/check/u-metrics").status_code == 401

    # The test transaction never commits, so the outbox rows of the flow wait for the relay.
    during = scrape()
    backlog = Outbox.objects.filter(published_at__isnull=True).count()
    assert backlog >= 2
    assert value(during, "billing_outbox_backlog") == backlog
    assert 0 <= value(during, "billing_outbox_oldest_age_seconds") < 60

    relay_outbox.apply()  # what beat runs: through Celery, so its run is recorded (operations/job_runs.py)
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("billing_webhooks_received_total", provider="hooktest", event_type="status", result="stored") == 1
    assert delta("billing_webhooks_received_total", provider="hooktest", event_type="status", result="duplicate") == 1
    assert delta("billing_webhooks_rejected_total", provider="hooktest", code="bad_signature") == 1
    assert delta("billing_webhooks_processed_total", provider="hooktest", event_type="status",
                 outcome="processed") == 1
    assert delta("billing_webhooks_processed_total", provider="hooktest", event_type="test", outcome="ignored") == 1
    assert delta("billing_webhooks_failed_total", provider="hooktest", event_type="permanent", retry="none") == 1
    assert delta("billing_webhooks_failed_total", provider="hooktest", event_type="flaky", retry="planned") == 1
    assert delta("billing_webhooks_dead_total", provider="hooktest", event_type="needs_fix") == 1
    assert delta("billing_webhooks_processed_total", provider="google",
                 event_type="SUBSCRIPTION_PURCHASED", outcome="processed") == 1
    assert delta("billing_webhook_processing_lag_seconds_count", provider="hooktest") == 1
    assert delta("billing_webhook_processing_lag_seconds_bucket", provider="hooktest", le="5.0") == 1

    assert delta("billing_check_requests_total", status="200") == 2
    assert delta("billing_check_requests_total", status="401") == 1
    assert delta("billing_check_latency_seconds_count") == 3
    assert 0 < delta("billing_check_latency_seconds_sum") < 3
    assert delta("billing_check_cache_total", result="miss") == 1
    assert delta("billing_check_cache_total", result="hit") == 1

    assert delta("billing_store_api_calls_total", store="google", operation="subscription_get", outcome="ok") == 1
    assert delta("billing_store_api_calls_total", store="google", operation="subscription_acknowledge",
                 outcome="ok") == 1
    assert delta("billing_store_api_call_seconds_count", store="google", operation="subscription_get") == 1
    assert value(after, "billing_store_api_budget_used_calls", store="google", share="minute") == 2
    assert value(after, "billing_store_api_budget_limit_calls", store="google", share="minute") == 3000
    assert value(after, "billing_store_api_budget_used_ratio", store="google", share="minute") == 2 / 3000
    assert value(after, "billing_store_api_budget_used_calls", store="google", share="day") == 2
    assert value(after, "billing_store_api_budget_limit_calls", store="google", share="day") == 200_000

    assert value(after, "billing_google_acknowledgements_pending", linked="true") == 1
    assert 7000 < value(after, "billing_google_acknowledgement_deadline_seconds") <= 7200

    assert value(after, "billing_subscriptions_live", provider="manual", status="ACTIVE") == 1  # sub_M1
    assert value(after, "billing_subscriptions_live", provider="google", status="ACTIVE") == 2
    assert value(after, "billing_outbox_backlog") == 0  # the relay published them
    assert value(after, "billing_outbox_oldest_age_seconds") == 0
    last_relay = value(after, "billing_beat_job_last_success_timestamp_seconds", task="billing.tasks.relay_outbox")
    assert 0 <= time.time() - last_relay < 60
    for source in ("outbox", "google_acknowledgements", "live_subscriptions", "store_budgets", "beat_jobs"):
        assert value(after, "billing_metrics_source_up", source=source) == 1


@pytest.mark.django_db
def test_a_failing_source_is_reported_and_the_rest_still_served(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: the budget cannot be read
    samples = scrape()
    assert value(samples, "billing_metrics_source_up", source="store_budgets") == 0
    assert not [key for key in samples if key[0].startswith("billing_store_api_budget")]
    assert ("billing_outbox_backlog",) in samples
    assert value(samples, "billing_metrics_source_up", source="outbox") == 1
    assert value(samples, "billing_metrics_source_up", source="live_subscriptions") == 1


# --- Counts from a real worker process ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_counts_from_a_celery_worker_process_reach_metrics(client, queued_tasks, start_worker, settings,  # noqa: F811
                                                           tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    start_worker(PROMETHEUS_MULTIPROC_DIR=str(directory))
    assert post(client, event_body("evt_w1", subscription_id="sub_W1")).status_code == 200
    assert post(client, event_body("evt_w2", type="test")).status_code == 200

    wait_for(lambda: set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed", "ignored"},
             timeout=60, message="both events processed by the worker")
    settings.PROMETHEUS_MULTIPROC_DIR = str(directory)
    # The worker counts an event once its task has finished with it, a moment after the row says so.
    wait_for(lambda: value(scrape(), "billing_webhook_processing_lag_seconds_count", provider="hooktest") == 1
             and value(scrape(), "billing_webhooks_processed_total", provider="hooktest", event_type="test",
                       outcome="ignored") == 1, timeout=20, message="the worker's counts in the scrape")
    samples = scrape()

    assert value(samples, "billing_webhooks_processed_total", provider="hooktest", event_type="status",
                 outcome="processed") == 1
    assert value(samples, "billing_webhooks_processed_total", provider="hooktest", event_type="test",
                 outcome="ignored") == 1
    assert value(samples, "billing_webhook_processing_lag_seconds_count", provider="hooktest") == 1
    assert any(path.name.endswith(".db") for path in directory.iterdir())  # one file per worker process
    # the scrape-time gauges are computed by the scraping process itself
    assert value(samples, "billing_subscriptions_live", provider="manual", status="ACTIVE") == 1



def test_the_counting_module_imports_nothing_of_the_project():
    """billing/ and webhooks/ count through operations.metrics: it must not import them back."""
    tree = ast.parse((Path(__file__).resolve().parents[2] / "operations" / "metrics.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"accounts", "billing", "config", "operations", "outgoing", "webhooks"}
    assert "prometheus_client" in imported
