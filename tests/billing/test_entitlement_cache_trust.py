"""The check answer never trusts a cache entry it cannot read or verify: the database answers instead,
never a 500, and whoever can write to Redis cannot grant access by writing an entry."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from billing import entitlement_cache
from billing.statuses import Status
from tests.api_support import api_key, with_key
from tests.factories import SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

FORGED_ACTIVE = [{"id": 1, "provider": "stripe", "product_id": "price_x", "status": "ACTIVE", "expires_at": None,
                  "grace_until": None, "entitlements": ["premium"], "environment": "production",
                  "last_verified_at": None}]


def check(client, user_id):
    response = client.get(f"/api/subscriptions/check/{user_id}", **with_key(api_key("check")))
    assert response.status_code == 200, response.content
    return response.json()


def revoked_user(external_id: str):
    return SubscriptionFactory(subscriber=SubscriberFactory(external_id=external_id), status=Status.REVOKED)


@pytest.mark.parametrize("raw", [
    "{not json",
    "v1:1:abc:[]",  # a signed form with a wrong signature
    json.dumps({"status": "ACTIVE"}),
    "\udcff" * 3,
], ids=["not-json", "bad-signature", "unsigned-json", "lone-surrogates"])
def test_an_unreadable_entry_is_a_database_read_and_is_replaced(client, redis_client, raw):
    revoked_user("201")
    redis_client.set(entitlement_cache.key_for("201"), raw.encode("utf-8", "surrogatepass"))

    body = check(client, "201")

    assert body["is_subscribed"] is False and body["status"] == "REVOKED"  # the database's answer
    assert [e["status"] for e in entitlement_cache.get("201")] == ["REVOKED"]  # refilled, readable


def test_a_key_of_another_type_is_a_database_read(client, redis_client):
    revoked_user("206")
    redis_client.hset(entitlement_cache.key_for("206"), "status", "ACTIVE")  # GET answers WRONGTYPE
    assert check(client, "206")["status"] == "REVOKED"
    assert entitlement_cache.get("206")[0]["status"] == "REVOKED"


@pytest.mark.parametrize("entries", [
    {"status": "ACTIVE"},
    [{"status": "GRANTED_BY_ME", "entitlements": []}],
    [{**FORGED_ACTIVE[0], "entitlements": "premium"}],
    [{**FORGED_ACTIVE[0], "expires_at": "next year"}],
    [{**FORGED_ACTIVE[0], "provider": 7}],
    [None],
], ids=["not-a-list", "unknown-status", "entitlements-not-a-list", "bad-date", "provider-not-text", "null-entry"])
def test_a_signed_entry_of_the_wrong_shape_is_a_database_read(client, redis_client, entries):
    # Only a bug of ours (or an older release) could sign these; still no 500.
    revoked_user("202")
    redis_client.set(entitlement_cache.key_for("202"), entitlement_cache.encode("202", entries))

    assert check(client, "202")["status"] == "REVOKED"


def test_an_entry_written_by_someone_with_redis_access_grants_nothing(client, redis_client, settings):
    revoked_user("203")
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="204"))  # entitled
    assert check(client, "204")["is_subscribed"] is True  # its signed entry is now cached

    redis_client.set(entitlement_cache.key_for("203"), json.dumps(FORGED_ACTIVE))  # the old format, unsigned
    assert check(client, "203")["is_subscribed"] is False
    # a genuine entry of another user, copied over
    redis_client.set(entitlement_cache.key_for("203"), redis_client.get(entitlement_cache.key_for("204")))
    assert check(client, "203")["is_subscribed"] is False
    # an entry signed with another secret key
    ours, settings.SECRET_KEY = settings.SECRET_KEY, "someone else's secret key, not ours" * 2
    forged = entitlement_cache.encode("203", FORGED_ACTIVE)
    settings.SECRET_KEY = ours
    redis_client.set(entitlement_cache.key_for("203"), forged)
    assert check(client, "203")["is_subscribed"] is False


def test_an_entry_older_than_its_ttl_is_not_replayed(client, redis_client, settings):
    settings.CHECK_CACHE_TTL_SECONDS = 60
    revoked_user("205")
    genuine = entitlement_cache.encode("205", FORGED_ACTIVE)  # as written while the user was entitled
    with time_machine.travel(timezone.now() + timedelta(seconds=30)):
        redis_client.set(entitlement_cache.key_for("205"), genuine)  # replayed within its lifetime
        assert check(client, "205")["is_subscribed"] is True
    with time_machine.travel(timezone.now() + timedelta(seconds=120)):
        redis_client.set(entitlement_cache.key_for("205"), genuine)  # replayed later, with no TTL
        assert check(client, "205")["is_subscribed"] is False
