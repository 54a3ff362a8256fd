"""The one place a Redis client is built (stream, entitlement cache). None when REDIS_URL is empty."""

import redis
from django.conf import settings

_clients: dict[str, redis.Redis] = {}


def get_redis() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        # Short timeouts: a Redis outage must degrade to the database, not hang requests.
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2,
                                      health_check_interval=30)
        _clients[url] = client
    return client
