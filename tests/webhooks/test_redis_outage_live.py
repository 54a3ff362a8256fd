"""Redis (the cache and the broker) dropping packets, hung, refusing, stopped and started again, with
real processes: webhooks are stored and answered quickly, checks answer from the database, and what
arrived during the outage is processed within a minute of Redis coming back."""

import statistics
import time

import pytest
import requests

from tests.api_support import api_key
from tests.factories import SubscriberFactory, SubscriptionFactory
from tests.fakes.outages import RedisServer, SilentPort
from tests.helpers import closed_port
from webhooks import sweep
from webhooks.models import WebhookEvent

from .adapter import event_body
from .helpers import http_post, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _status(dedupe_key: str) -> str | None:
    return WebhookEvent.objects.filter(dedupe_key=dedupe_key).values_list("status", flat=True).first()


def _timed(call) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = call()
    return time.monotonic() - started, response


class _Refusing:
    """A closed port: connections refused at once."""

    def __enter__(self) -> int:
        return closed_port()

    def __exit__(self, *exc) -> None:
        pass


OUTAGES = {
    "packets-dropped": (lambda: SilentPort(answers_connect=False), 2.0),
    "hung-server": (lambda: SilentPort(answers_connect=True), 2.0),
    "refused": (_Refusing, 1.0),
}


@pytest.mark.parametrize("outage", OUTAGES)
def test_webhooks_and_checks_are_answered_quickly_while_redis_does_not_answer(start_server, outage):
    outage_port, first_bound = OUTAGES[outage]
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="401"))
    check_headers = {"Authorization": f"Api-Key {api_key('check')}"}
    with outage_port() as port:
        url = f"redis://127.0.0.1:{port}/0"
        server = start_server(REDIS_URL=url, CELERY_BROKER_URL=url)

        first, response = _timed(lambda: http_post(server.base_url, event_body("evt_out_0", subscription_id="s0")))
        assert response.status_code == 200 and response.json() == {"status": "received"}
        later = []
        for i in range(1, 11):
            took, response = _timed(lambda i=i: http_post(server.base_url, event_body(f"evt_out_{i}")))
            assert response.status_code == 200
            later.append(took)
        checks = []
        for _ in range(10):
            took, response = _timed(lambda: requests.get(f"{server.base_url}/api/subscriptions/check/401",
                                                         headers=check_headers, timeout=10))
            assert response.status_code == 200 and response.json()["is_subscribed"] is True
            checks.append(took)

    print(f"\n{outage}: first webhook {first * 1000:.0f} ms, then median {statistics.median(later) * 1000:.1f} ms"
          f" (max {max(later) * 1000:.0f}); checks median {statistics.median(checks) * 1000:.1f} ms"
          f" (max {max(checks) * 1000:.0f})")
    assert first < first_bound
    assert max(later) < 1.0 and statistics.median(later) < 0.25  # the breaker: no timeout per webhook
    assert max(checks) < 1.0
    # every event stored, and due at once for the sweeper (its publish failed)
    events = WebhookEvent.objects.filter(dedupe_key__startswith="evt_out_")
    assert events.count() == 11
    assert set(events.values_list("status", flat=True)) == {"received"}
    assert not events.filter(next_attempt_at__isnull=True).exists()
    assert set(sweep.events_stuck().values_list("pk", flat=True)) == set(events.values_list("pk", flat=True))


def test_events_accepted_while_redis_was_down_are_processed_within_a_minute_of_its_return(
        start_server, start_worker, tmp_path):
    redis_server = RedisServer(tmp_path, closed_port()).start()
    try:
        env = {"REDIS_URL": redis_server.url, "CELERY_BROKER_URL": redis_server.url}
        start_worker(**env)
        server = start_server(**env)
        assert http_post(server.base_url, event_body("evt_before", subscription_id="sub_B")).status_code == 200
        wait_for(lambda: _status("evt_before") == "processed", timeout=60, message="the pipeline working")

        redis_server.stop()
        answers = []
        for i in range(3):
            took, response = _timed(lambda i=i: http_post(server.base_url, event_body(
                f"evt_down_{i}", subscription_id=f"sub_D{i}", user_id=str(500 + i))))
            assert response.status_code == 200 and response.json() == {"status": "received"}
            answers.append(took)
        time.sleep(3)  # an outage of a few seconds: the worker is retrying its broker connection
        assert {_status(f"evt_down_{i}") for i in range(3)} == {"received"}

        redis_server.start()
        back = time.monotonic()
        wait_for(lambda: {_status(f"evt_down_{i}") for i in range(3)} == {"processed"}, timeout=60,
                 interval=0.2, message="the events accepted during the outage processed")
        recovered_in = time.monotonic() - back
    finally:
        redis_server.stop()

    print(f"\nwebhooks during the outage answered in {', '.join(f'{t * 1000:.0f}' for t in answers)} ms; "
          f"processed {recovered_in:.1f} s after Redis came back")
    assert max(answers) < 1.0
    assert recovered_in < 60


def test_an_event_whose_publish_failed_is_taken_by_the_next_sweep(start_server, settings):
    assert settings.WEBHOOK_SWEEP_AFTER_SECONDS >= 300  # the default: events the queue has are left alone
    server = start_server(CELERY_BROKER_URL=f"redis://127.0.0.1:{closed_port()}/0")  # the broker refuses

    assert http_post(server.base_url, event_body("evt_unqueued", subscription_id="sub_U")).status_code == 200

    assert list(sweep.events_stuck().values_list("dedupe_key", flat=True)) == ["evt_unqueued"]
    assert sweep.events_sweep() == 1  # tasks run in this test process: the drain runs here
    assert _status("evt_unqueued") == "processed"
