"""GET /health: 200 `{"status": "ok"}`, 503 `{"status": "error"}` only when the database is unreachable
(nothing works without it); Redis down is degraded (checks answer from the database, events wait in the
outbox). The liveness answer is public (load balancers, probes); each dependency's state, which maps
the deployment, only for trusted networks and signed-in staff."""

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

from accounts.permissions import is_trusted_network_or_staff
from billing import store_budgets
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
    # The rest only for trusted networks and staff.
    "database": serializers.CharField(required=False), "redis": serializers.CharField(required=False),
    "broker": serializers.CharField(required=False),
    "providers": serializers.DictField(child=serializers.CharField(), required=False),
    "outbox_pending": serializers.IntegerField(allow_null=True, required=False),
    # Per store: {"minute": {"used", "limit"}, "day": {"used", "limit"}, "paused_until"} (limit 0: none).
    "store_budgets": serializers.DictField(child=serializers.DictField(), required=False),
})


def health_details(database: str) -> dict:
    redis_status = redis_state()
    pending = Outbox.objects.filter(published_at__isnull=True).count() if database == "ok" else None
    return {"database": database, "redis": redis_status, "broker": broker_state(redis_status),
            "providers": providers_state(), "outbox_pending": pending, "store_budgets": store_budgets.usage_or_limits()}


def _may_see_details(request) -> bool:
    try:
        return is_trusted_network_or_staff(request)
    except DatabaseError:  # a staff session cannot be read while the database is down: the bare answer
        return False


class HealthApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def perform_authentication(self, request):
        # DRF would replace the session's user with None (no authentication classes); the details need
        # it, read lazily and only when the caller is not on a trusted network (_may_see_details).
        pass

    @extend_schema(operation_id="health", summary="Service health",
                   description="`status` for everyone; each dependency's state for trusted networks and staff.",
                   responses={200: _HEALTH, 503: _HEALTH}, tags=["operations"])
    def get(self, request):
        database = database_state()
        body = {"status": "ok" if database == "ok" else "error"}
        if _may_see_details(request):
            body.update(health_details(database))
        response = Response(body, status=200 if database == "ok" else 503)
        response["Cache-Control"] = "no-store"
        return response
