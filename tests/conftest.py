import pytest

from billing.redis_client import circuit_reset, get_redis
from tests.api_support import api_key, with_key


@pytest.fixture(autouse=True)
def _clean_redis():
    """Every test starts with an empty Redis database (the tests' own: db 15) that this process uses
    (no circuit breaker left open by an earlier test)."""
    circuit_reset()
    client = get_redis()
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture
def redis_client():
    return get_redis()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Staff users are made with passwords; the production hasher takes ~0.5 s per hash here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def service_auth(db):
    """Request headers of a backend service calling the API with a key of these scopes:
    `client.get(url, **service_auth("check", "read"))`."""

    def headers(*scopes: str) -> dict:
        return with_key(api_key(*scopes))

    return headers
