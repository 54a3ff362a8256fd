"""The check API's WSGI fast path (billing/api/check_wsgi.py, config/wsgi.py) answers exactly what the
full path answers, for every status and every kind of caller, and hands everything it does not answer
to the full path (refusals, misses, Redis absent or down, forged entries), headers included."""

import json
import os
import re
import time
from datetime import timedelta

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from accounts.services import api_key_revoke
from billing import entitlement_cache
from billing.api.auth_failures import forget_refused_addresses
from billing.api.check_wsgi import CheckWSGIFastPath, database_entries
from billing.redis_client import circuit_open, get_redis
from billing.statuses import Status
from tests.api_support import UNTRUSTED, api_key, bearer, configure_jwt, with_key
from tests.factories import ProductFactory, SubscriberFactory, SubscriptionFactory
from tests.fakes.outages import SilentPort

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _jwt(settings):
    configure_jwt(settings)
    clear_api_key_cache()
    forget_refused_addresses()
    yield
    clear_api_key_cache()
    forget_refused_addresses()


class FullPath:
    """Django's own WSGI handler behind the fast path, counting the requests handed to it. As Django's
    test client does, the test's database connection is not closed at the end of a request."""

    def __init__(self):
        self.django = WSGIHandler()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            response = self.django(environ, start_response)
            body = b"".join(response)
            response.close()
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)
        return [body]


@pytest.fixture
def app():
    full = FullPath()
    wrapped = CheckWSGIFastPath(full)
    wrapped.full = full
    return wrapped


def serve(app, path, **extra):
    """(status code, headers, body bytes) of `app` for a GET, the WSGI way a server calls it."""
    environ = RequestFactory().get(path, **{"HTTP_HOST": "testserver", **extra}).environ
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def without_time(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "as_of"}


def subscription_in(status: str, external_id: str):
    now = timezone.now()
    grace = now + timedelta(days=25) if status == Status.ON_GRACE else None
    return SubscriptionFactory(subscriber=SubscriberFactory(external_id=external_id), status=status,
                               expires_at=now + timedelta(days=20), grace_until=grace,
                               last_verified_at=now - timedelta(hours=1))


CALLERS = {
    "trusted": lambda uid: {"REMOTE_ADDR": "127.0.0.1"},
    "api key": lambda uid: with_key(api_key("check")),
    "jwt": lambda uid: bearer(uid),
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("status", [s.value for s in Status])
def test_the_fast_answer_equals_the_full_answer_for_every_status_and_caller(client, app, status, caller):
    uid = f"u-{status.lower()}"
    subscription_in(status, uid)
    auth = CALLERS[caller](uid)
    full = client.get(f"/api/subscriptions/check/{uid}", **auth)  # the full path (it also fills the cache)
    assert full.status_code == 200
    code, headers, body = serve(app, f"/api/subscriptions/check/{uid}", **auth)
    assert app.full.calls == 0, "answered by the fast path"
    assert code == 200
    assert without_time(json.loads(body)) == without_time(full.json())
    assert json.loads(body)["as_of"] > full.json()["as_of"]  # computed now, not cached
    assert body == json.dumps(json.loads(body)).encode()  # json.dumps' spelling, as the full path's
    for name in ("Content-Type", "X-Content-Type-Options", "Cache-Control"):
        assert headers[name] == full[name]
    assert headers["X-Request-ID"] and headers["Content-Length"] == str(len(body))
    # Asked again: the entry verified once is answered from the process's memo, the same answer in the
    # same bytes (json.dumps' spelling), with a new as_of.
    code, again_headers, again = serve(app, f"/api/subscriptions/check/{uid}", **auth)
    assert (code, app.full.calls) == (200, 0)
    assert without_time(json.loads(again)) == without_time(full.json())
    assert json.loads(again)["as_of"] > json.loads(body)["as_of"]
    assert again == json.dumps(json.loads(again)).encode()
    assert again_headers["Content-Length"] == str(len(again))
    assert again_headers["X-Request-ID"] != headers["X-Request-ID"]


def test_several_subscriptions_and_a_lapsed_one_read_the_same(client, app):
    user = SubscriberFactory(external_id="many")
    now = timezone.now()
    SubscriptionFactory(subscriber=user, status=Status.ACTIVE, expires_at=now - timedelta(hours=1))  # lapsed
    SubscriptionFactory(subscriber=user, status=Status.TRIAL, expires_at=now + timedelta(days=3),
                        product=ProductFactory(entitlements=["no_ads"]))
    SubscriptionFactory(subscriber=user, status=Status.CANCELED, expires_at=now + timedelta(days=9))
    full = client.get("/api/subscriptions/check/many").json()
    _code, _headers, body = serve(app, "/api/subscriptions/check/many")
    assert app.full.calls == 0
    assert without_time(json.loads(body)) == without_time(full)
    assert full["is_subscribed"] is True and full["entitlements"] == ["no_ads", "premium"]


def test_an_expiry_passing_is_seen_by_the_fast_path_without_a_write(client, app):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="soon"),
                        expires_at=timezone.now() + timedelta(milliseconds=500))
    assert client.get("/api/subscriptions/check/soon").json()["is_subscribed"] is True
    assert json.loads(serve(app, "/api/subscriptions/check/soon")[2])["is_subscribed"] is True  # remembered
    time.sleep(0.6)
    _code, _headers, body = serve(app, "/api/subscriptions/check/soon")
    assert app.full.calls == 0
    assert json.loads(body)["is_subscribed"] is False and json.loads(body)["status"] == "EXPIRED"


@pytest.mark.parametrize("redis_url", ["", "redis://127.0.0.1:1/0"], ids=["no Redis", "Redis down"])
@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("status", [Status.ACTIVE.value, Status.ON_GRACE.value, Status.REVOKED.value])
def test_without_redis_the_answer_is_the_full_paths(client, app, settings, redis_url, caller, status):
    uid = f"db-{status.lower()}"
    subscription_in(status, uid)
    auth = CALLERS[caller](uid)
    full = client.get(f"/api/subscriptions/check/{uid}", **auth).json()
    settings.REDIS_URL = redis_url
    code, headers, body = serve(app, f"/api/subscriptions/check/{uid}", **auth)
    assert code == 200 and headers["X-Request-ID"]
    assert without_time(json.loads(body)) == without_time(full)


def test_a_miss_goes_to_the_full_path_which_fills_the_cache(app, redis_client):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="cold"))
    code, _headers, body = serve(app, "/api/subscriptions/check/cold")
    assert (code, app.full.calls) == (200, 1) and json.loads(body)["is_subscribed"] is True
    assert redis_client.exists(entitlement_cache.key_for("cold"))
    serve(app, "/api/subscriptions/check/cold")
    assert app.full.calls == 1  # the second one is a hit


def test_an_entry_written_without_the_secret_key_grants_nothing(app, redis_client):
    SubscriberFactory(external_id="victim")
    forged = [{"id": 1, "provider": "stripe", "product_id": "p", "status": "ACTIVE", "expires_at": None,
               "grace_until": None, "entitlements": ["premium"], "environment": "production",
               "last_verified_at": None}]
    written_at = str(int(time.time()))
    redis_client.set(entitlement_cache.key_for("victim"),
                     f"v1:{written_at}:{'0' * 64}:{json.dumps(forged)}")
    code, _headers, body = serve(app, "/api/subscriptions/check/victim")
    assert app.full.calls == 1  # refused by the fast path; the full path drops it and reads the database
    assert code == 200 and json.loads(body)["is_subscribed"] is False
    assert entitlement_cache.get("victim") == []  # replaced by the database's truth, signed
    assert json.loads(serve(app, "/api/subscriptions/check/victim")[2])["is_subscribed"] is False


@pytest.mark.parametrize(("auth", "code"), [
    ({"REMOTE_ADDR": UNTRUSTED}, 401),
    ({"HTTP_AUTHORIZATION": "Api-Key bk_not-a-key", "REMOTE_ADDR": "127.0.0.1"}, 401),
    ({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz", "REMOTE_ADDR": "127.0.0.1"}, 401),
    ({"HTTP_HOST": "evil.example.com"}, 400),
])
def test_refusals_are_the_full_paths_with_a_request_id(client, app, auth, code):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="42"))
    client.get("/api/subscriptions/check/42")  # cached: a refusal must not be answered from the cache
    status, headers, _body = serve(app, "/api/subscriptions/check/42", **auth)
    assert (status, app.full.calls) == (code, 1)
    assert headers["X-Request-ID"]


def test_scopes_other_users_and_revoked_keys_are_refused_with_a_warm_cache(client, app):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="42"))
    client.get("/api/subscriptions/check/42")
    assert serve(app, "/api/subscriptions/check/42", **with_key(api_key("read")))[0] == 403
    assert serve(app, "/api/subscriptions/check/42", **bearer("43"))[0] == 403
    raw = api_key("check")
    assert serve(app, "/api/subscriptions/check/42", **with_key(raw))[0] == 200  # now in the key cache
    api_key_revoke(prefix=raw.split("_")[1])
    clear_api_key_cache()  # what every process knows once API_KEY_CACHE_SECONDS passed
    assert serve(app, "/api/subscriptions/check/42", **with_key(raw))[0] == 401


def test_an_address_over_the_failed_authentication_limit_is_refused_even_on_a_hit(client, app, settings):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS = "3/minute"
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="42"))
    client.get("/api/subscriptions/check/42")
    assert [serve(app, "/api/subscriptions/check/42", **with_key("bk_not-a-key"))[0] for _ in range(4)] == \
        [401, 401, 401, 429]
    status, headers, _body = serve(app, "/api/subscriptions/check/42", **bearer("42"))
    assert status == 429 and headers["X-Request-ID"]


def test_the_callers_request_id_is_kept(client, app):
    client.get("/api/subscriptions/check/1")
    _code, headers, _body = serve(app, "/api/subscriptions/check/1", HTTP_X_REQUEST_ID="trace-123")
    assert app.full.calls == 0 and headers["X-Request-ID"] == "trace-123"
    _code, headers, _body = serve(app, "/api/subscriptions/check/1", HTTP_X_REQUEST_ID="bad\nid")
    assert headers["X-Request-ID"] != "bad\nid" and len(headers["X-Request-ID"]) == 32


def test_head_queries_and_other_paths_take_the_full_path(client, app):
    client.get("/api/subscriptions/check/1")
    code, _headers, body = serve(app, "/api/subscriptions/check/1?entitlement=premium")
    assert (code, app.full.calls) == (200, 1) and json.loads(body)["entitlements"] == []
    assert serve(app, "/health")[0] in (200, 503) and app.full.calls == 2


def test_the_wsgi_application_is_wrapped():
    from config.wsgi import application

    assert isinstance(application, CheckWSGIFastPath)
    assert get_redis() is not None


@pytest.mark.django_db(transaction=True)  # the fast path reads only outside a transaction, as a server does
@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("status", [s.value for s in Status])
def test_without_redis_the_fast_paths_one_query_answers_as_the_full_path(client, app, settings, status, caller):
    settings.REDIS_URL = ""
    uid = f"q-{status.lower()}"
    subscription_in(status, uid)
    SubscriptionFactory(subscriber=SubscriberFactory(external_id=f"{uid}-other"))  # not read
    auth = CALLERS[caller](uid)
    full = client.get(f"/api/subscriptions/check/{uid}", **auth).json()
    with CaptureQueriesContext(connection) as queries:
        code, headers, body = serve(app, f"/api/subscriptions/check/{uid}", **auth)
    assert app.full.calls == 0, "answered by the fast path"
    assert len(queries) == 0  # not through Django's cursor: the prepared query on the same connection
    assert code == 200 and headers["X-Request-ID"]
    assert without_time(json.loads(body)) == without_time(full)


@pytest.mark.django_db(transaction=True)
def test_without_redis_several_subscriptions_and_entitlements_read_as_the_full_path(client, app, settings):
    """The one query's rows are read from libpq's text (check_wsgi._row): several rows per subscription
    (one per entitlement), none, a NULL grace and verification time, microseconds, non-ASCII text."""
    settings.REDIS_URL = ""
    user = SubscriberFactory(external_id="rows")
    now = timezone.now().replace(microsecond=123456)
    SubscriptionFactory(subscriber=user, status=Status.ON_GRACE, expires_at=now - timedelta(hours=1),
                        grace_until=now + timedelta(days=2), product=ProductFactory(
                            store_product_id="abo.prämie", entitlements=["pro", "ad_free", "cloud"]))
    SubscriptionFactory(subscriber=user, status=Status.ACTIVE, expires_at=now + timedelta(days=30),
                        last_verified_at=None, product=ProductFactory(entitlements=[]))
    SubscriptionFactory(subscriber=user, status=Status.EXPIRED, expires_at=now - timedelta(days=40))
    full = client.get("/api/subscriptions/check/rows").json()
    code, _headers, body = serve(app, "/api/subscriptions/check/rows")
    assert code == 200 and app.full.calls == 0
    assert without_time(json.loads(body)) == without_time(full)
    assert full["entitlements"] == ["ad_free", "cloud", "pro"] and full["is_subscribed"] is True


@pytest.mark.django_db(transaction=True)
def test_without_redis_a_broken_connection_is_left_to_the_full_path(client, app, settings):
    settings.REDIS_URL = ""
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="b"))
    client.get("/api/subscriptions/check/b")
    connection.connection.close()  # e.g. PostgreSQL restarted
    try:
        assert database_entries("b") is None  # no exception: the full path's health check reconnects
        assert connection.errors_occurred  # what makes the next request start check the connection
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_without_prepared_statements_the_answer_is_the_same(client, app, settings):
    """CHECK_API_PREPARED_QUERY=0, for a connection pooler in transaction mode."""
    settings.REDIS_URL = ""
    settings.CHECK_API_PREPARED_QUERY = False
    subscription_in(Status.ON_GRACE, "np")
    full = client.get("/api/subscriptions/check/np").json()
    for _ in range(2):
        _code, _headers, body = serve(app, "/api/subscriptions/check/np")
        assert without_time(json.loads(body)) == without_time(full)
    assert app.full.calls == 0


def test_an_unexpected_error_in_the_fast_path_never_costs_the_answer(client, app, redis_client, settings):
    """Whatever goes wrong in the fast path, the full path answers (with its X-Request-ID)."""
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="odd"))
    client.get("/api/subscriptions/check/odd")
    settings.ALLOWED_HOSTS = None  # breaks the fast path's Host check with a TypeError
    _code, headers, _body = serve(app, "/api/subscriptions/check/odd")
    assert app.full.calls == 1
    assert headers["X-Request-ID"]


def test_a_rewritten_entry_is_answered_anew_not_from_the_memo(client, app):
    """A change written to the cache (a refund, a renewal) is the next answer, though the old entry's
    answer is remembered."""
    subscription = subscription_in(Status.ACTIVE, "changes")
    client.get("/api/subscriptions/check/changes")
    assert json.loads(serve(app, "/api/subscriptions/check/changes")[2])["is_subscribed"] is True
    assert json.loads(serve(app, "/api/subscriptions/check/changes")[2])["is_subscribed"] is True
    type(subscription).objects.filter(pk=subscription.pk).update(status=Status.REVOKED)
    entitlement_cache.refresh_many([subscription.subscriber_id])  # what the writer does after commit
    code, _headers, body = serve(app, "/api/subscriptions/check/changes")
    assert (code, app.full.calls) == (200, 0)
    assert json.loads(body)["is_subscribed"] is False and json.loads(body)["status"] == "REVOKED"


def test_an_entry_past_its_age_limit_is_not_answered_from_the_memo(client, app, settings):
    settings.CHECK_CACHE_TTL_SECONDS = 1
    subscription_in(Status.ACTIVE, "aging")
    client.get("/api/subscriptions/check/aging")
    serve(app, "/api/subscriptions/check/aging")
    assert app.full.calls == 0
    time.sleep(2.1)  # the entry is now older than CHECK_CACHE_TTL_SECONDS (whole seconds: up to 2 s)
    code, _headers, body = serve(app, "/api/subscriptions/check/aging")
    assert (code, app.full.calls) == (200, 1)  # the full path judged it stale and read the database
    assert json.loads(body)["is_subscribed"] is True


def test_new_request_ids_are_32_hex_digits_and_never_repeat_across_worker_processes(client, app):
    """Answers without a caller's id carry a fresh one, as the middleware's: 32 hex digits, unique
    within a process and between forked workers (the fast path's are a per-process prefix + counter)."""
    client.get("/api/subscriptions/check/1")
    ids = [serve(app, "/api/subscriptions/check/1")[1]["X-Request-ID"] for _ in range(50)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == 50
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker forked from the same parent, as gunicorn's are
        try:
            os.write(write, serve(app, "/api/subscriptions/check/1")[1]["X-Request-ID"].encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    childs = os.read(read, 100).decode()
    os.close(read)
    mine = serve(app, "/api/subscriptions/check/1")[1]["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", childs) and childs[:16] != mine[:16]


def test_a_hung_redis_costs_one_timeout_then_the_answer_comes_from_the_database(client, app, settings):
    """A Redis that accepts the connection and never answers: the raw GET gives up at
    REDIS_SOCKET_TIMEOUT_SECONDS, opens the breaker, and the answer is still the full path's."""
    subscription_in(Status.ACTIVE, "hung")
    full = client.get("/api/subscriptions/check/hung").json()
    with SilentPort(answers_connect=True) as port:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        settings.REDIS_SOCKET_TIMEOUT_SECONDS = 0.2
        code, headers, body = serve(app, "/api/subscriptions/check/hung")
        assert code == 200 and headers["X-Request-ID"]
        assert without_time(json.loads(body)) == without_time(full)
        assert circuit_open(settings.REDIS_URL)
