"""manage.py create_api_key / revoke_api_key, and keys at work."""

import io
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from accounts.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_api_key_cache()


def create(*args) -> str:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_create_prints_the_key_once_and_stores_a_hash(client):
    raw = create("--name", "orders-service", "--scopes", "check,read")
    key = ApiKey.objects.get()
    assert raw.startswith(f"bk_{key.prefix}_") and key.hashed_key == ApiKey.hash(raw)
    assert raw not in str(ApiKey.objects.values())
    assert key.name == "orders-service" and key.scopes == ["check", "read"]
    response = client.get("/api/subscriptions/check/1", HTTP_AUTHORIZATION=f"Api-Key {raw}", REMOTE_ADDR="192.0.2.1")
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_unknown_scope_is_a_clear_error():
    with pytest.raises(CommandError, match=r"Unknown scope.*admin.*check, read, verify, manage"):
        create("--name", "x", "--scopes", "check,admin")
    assert not ApiKey.objects.exists()


def test_revoke(client):
    raw = create("--name", "old", "--scopes", "check")
    out = io.StringIO()
    call_command("revoke_api_key", "--prefix", ApiKey.objects.get().prefix, stdout=out)
    assert "Revoked" in out.getvalue()
    assert ApiKey.objects.get().revoked_at is not None
    response = client.get("/api/subscriptions/check/1", HTTP_AUTHORIZATION=f"Api-Key {raw}", REMOTE_ADDR="192.0.2.1")
    assert response.status_code == 401
    with pytest.raises(CommandError, match="No API key"):
        call_command("revoke_api_key", "--prefix", "nope1234")


def test_last_used_is_written_at_most_once_a_minute(client, settings):
    settings.API_KEY_CACHE_SECONDS = 0  # every request looks the key up
    raw = create("--name", "svc", "--scopes", "check")
    recent = timezone.now() - timedelta(seconds=20)
    ApiKey.objects.update(last_used_at=recent)
    client.get("/api/subscriptions/check/1", HTTP_AUTHORIZATION=f"Api-Key {raw}", REMOTE_ADDR="192.0.2.1")
    assert ApiKey.objects.get().last_used_at == recent
    ApiKey.objects.update(last_used_at=recent - timedelta(minutes=1))
    client.get("/api/subscriptions/check/1", HTTP_AUTHORIZATION=f"Api-Key {raw}", REMOTE_ADDR="192.0.2.1")
    assert ApiKey.objects.get().last_used_at > recent


def test_revocation_elsewhere_takes_effect_within_the_cache_window(client, settings):
    settings.API_KEY_CACHE_SECONDS = 0.3
    raw = create("--name", "svc", "--scopes", "check")
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {raw}", "REMOTE_ADDR": "192.0.2.1"}
    assert client.get("/api/subscriptions/check/1", **auth).status_code == 200
    ApiKey.objects.update(revoked_at=timezone.now())  # as another process's revocation looks from here
    assert client.get("/api/subscriptions/check/1", **auth).status_code == 200  # still cached
    time.sleep(0.35)
    assert client.get("/api/subscriptions/check/1", **auth).status_code == 401
