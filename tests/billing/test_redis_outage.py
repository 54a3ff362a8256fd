"""Redis unreachable, hung or refusing: the check API answers from the database at its usual speed
(short timeouts, then the circuit breaker skips Redis), and uses Redis again once it answers."""

import statistics
import time

import pytest
import redis

from billing import entitlement_cache, redis_client
from billing.models import Subscription
from billing.statuses import Status
from tests.api_support import api_key, with_key
from tests.factories import SubscriberFactory, SubscriptionFactory
from tests.fakes.outages import SilentPort
from tests.helpers import closed_port

pytestmark = pytest.mark.django_db

OUTAGES = {
    "packets-dropped": lambda: SilentPort(answers_connect=False),
    "hung-server": lambda: SilentPort(answers_connect=True),
}


def timed_checks(client, headers, user_id: str, n: int) -> list[float]:
    took = []
    for _ in range(n):
        started = time.monotonic()
        response = client.get(f"/api/subscriptions/check/{user_id}", **headers)
        took.append(time.monotonic() - started)
        assert response.status_code == 200 and response.json()["is_subscribed"] is True
    return took


@pytest.mark.parametrize("outage", OUTAGES)
def test_check_answers_from_the_database_at_its_usual_speed_when_redis_does_not_answer(client, settings, outage):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="301"))
    headers = with_key(api_key("check"))
    settings.REDIS_URL = ""
    baseline = statistics.median(timed_checks(client, headers, "301", 20))  # no Redis at all

    with OUTAGES[outage]() as port:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        first = timed_checks(client, headers, "301", 1)[0]
        rest = timed_checks(client, headers, "301", 20)

    print(f"\n{outage}: first check {first * 1000:.0f} ms, then median {statistics.median(rest) * 1000:.1f} ms, "
          f"max {max(rest) * 1000:.1f} ms; without Redis median {baseline * 1000:.1f} ms")
    assert first < 1.0
    # The breaker skips Redis: no timeout per call (without it, every call waits 250-500 ms).
    assert statistics.median(rest) < 3 * baseline + 0.02
    assert max(rest) < 1.0


def test_check_with_redis_refusing_connections_answers_from_the_database(client, settings):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="302"))
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    took = timed_checks(client, with_key(api_key("check")), "302", 10)
    print(f"\nrefused: first check {took[0] * 1000:.0f} ms, then max {max(took[1:]) * 1000:.1f} ms")
    assert max(took) < 1.0


def test_after_a_failure_redis_is_skipped_for_a_while_then_used_again(client, settings):
    settings.REDIS_CIRCUIT_BREAKER_SECONDS = 0.3
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="303"))
    headers = with_key(api_key("check"))
    assert client.get("/api/subscriptions/check/303", **headers).json()["is_subscribed"] is True  # now cached

    Subscription.objects.filter(pk=sub.pk).update(status=Status.REVOKED)  # around the write path: no refresh
    redis_client.report_failure(redis.ConnectionError("reset by peer"))
    assert redis_client.get_redis() is None and redis_client.hot_path_redis() is None
    assert client.get("/api/subscriptions/check/303", **headers).json()["is_subscribed"] is False  # database

    time.sleep(0.35)
    assert redis_client.get_redis() is not None
    assert client.get("/api/subscriptions/check/303", **headers).json()["is_subscribed"] is True  # cache again


def test_a_command_error_is_not_an_outage(settings):
    redis_client.report_failure(redis.ResponseError("WRONGTYPE Operation against a key"))
    assert redis_client.get_redis() is not None
    settings.REDIS_CIRCUIT_BREAKER_SECONDS = 0  # breaker off: every call tries Redis
    redis_client.report_failure(redis.ConnectionError("refused"))
    assert redis_client.get_redis() is not None


def test_a_failure_of_one_server_does_not_skip_another(settings):
    down = f"redis://127.0.0.1:{closed_port()}/0"
    redis_client.report_failure(url=down)
    assert redis_client.circuit_open(down)
    assert not redis_client.circuit_open(settings.REDIS_URL) and redis_client.get_redis() is not None
    # the same server under another database number or password is the same server
    assert redis_client.circuit_open(down.replace("/0", "/3").replace("redis://", "redis://:pw@"))


def test_cache_writes_missed_during_a_skip_are_made_once_redis_is_used_again(settings):
    settings.REDIS_CIRCUIT_BREAKER_SECONDS = 0.2
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="304"))
    entitlement_cache.refresh_many([sub.subscriber_id])
    assert entitlement_cache.get("304")[0]["status"] == "ACTIVE"

    redis_client.report_failure()
    Subscription.objects.filter(pk=sub.pk).update(status=Status.REVOKED)
    entitlement_cache.refresh_many([sub.subscriber_id])  # after its commit, while Redis is skipped
    time.sleep(0.25)
    entitlement_cache.refresh_many([])  # the next refresh of anyone in this process
    assert entitlement_cache.get("304")[0]["status"] == "REVOKED"
