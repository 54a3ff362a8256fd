"""GET /health: each dependency's state. 503 only when the database is unreachable (nothing works
without it); Redis down is degraded (checks answer from the database, events wait in the outbox)."""

import logging

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from drf_spectacular.utils import extend_schema, inline_serializer
from kombu import Connection
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import Outbox
from billing.providers.common import store_adapters
from billing.redis_client import get_redis, ping

logger = logging.getLogger(__name__)


def database_state(alias: str = DEFAULT_DB_ALIAS) -> str:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as exc:
        logger.error("health: database %s unreachable: %s", alias, exc)
        # Do not keep a broken connection around for the next request.
        connections[alias].close_if_unusable_or_obsolete()
        return "unavailable"


def redis_state() -> str:
    if not settings.REDIS_URL:
        return "not configured"
    client = get_redis()
    if client is None:
        return "unavailable"  # skipped: it failed a moment ago (redis_client's circuit breaker)
    try:
        client.ping()
        return "ok"
    except redis.RedisError:
        return "unavailable"


def broker_state(redis_status: str) -> str:
    url = settings.CELERY_BROKER_URL
    if settings.CELERY_TASK_ALWAYS_EAGER or url.startswith("memory://"):
        return "in-process"
    if url == settings.REDIS_URL:
        return redis_status
    if url.startswith(("redis://", "rediss://")):
        return "ok" if ping(url) else "unavailable"
    try:
        with Connection(url, connect_timeout=1) as conn:
            conn.ensure_connection(max_retries=1)
        return "ok"
    except Exception:  # kombu raises transport-specific errors
        return "unavailable"


def providers_state() -> dict[str, str]:
    states = {}
    for name, adapter in store_adapters():  # an adapter that cannot even load must not take /health down
        if adapter is None:
            states[name] = "error"
        else:
            states[name] = "configured" if adapter.is_configured() else "not configured"
    return states


_HEALTH = inline_serializer("Health", {
    "status": serializers.ChoiceField(choices=["ok", "error"]),
    "database": serializers.CharField(), "redis": serializers.CharField(), "broker": serializers.CharField(),
    "providers": serializers.DictField(child=serializers.CharField()),
    "outbox_pending": serializers.IntegerField(allow_null=True),
})


class HealthApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(operation_id="health", summary="Service health", responses={200: _HEALTH, 503: _HEALTH},
                   tags=["operations"])
    def get(self, request):
        database = database_state()
        redis_status = redis_state()
        pending = Outbox.objects.filter(published_at__isnull=True).count() if database == "ok" else None
        body = {
            "status": "ok" if database == "ok" else "error",
            "database": database,
            "redis": redis_status,
            "broker": broker_state(redis_status),
            "providers": providers_state(),
            "outbox_pending": pending,
        }
        return Response(body, status=200 if database == "ok" else 503)
