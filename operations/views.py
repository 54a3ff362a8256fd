"""GET /metrics: the Prometheus text format, for the trusted networks or a bearer token (METRICS_TOKEN),
never public. Everything the processes counted (metrics.py; in multiprocess mode summed over the files
of every process in PROMETHEUS_MULTIPROC_DIR), then the scrape-time gauges (collectors.py)."""

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from accounts.networks import is_trusted_request
from config.api_errors import error_body

from .collectors import ScrapeTimeCollector

_scrape_time = CollectorRegistry(auto_describe=False)
_scrape_time.register(ScrapeTimeCollector())


def _error(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse(error_body(code, message), status=status)
    response["Cache-Control"] = "no-store"
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _refusal(request) -> JsonResponse | None:
    """None when the caller may scrape. A token, when sent, is what counts (a wrong one from a trusted
    address is still refused), compared in constant time."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, token = header.partition(" ")
        expected = settings.METRICS_TOKEN
        if scheme.lower() == "bearer" and expected and hmac.compare_digest(token.strip().encode(), expected.encode()):
            return None
        return _error(401, "invalid_token", "The metrics token is not valid.")
    if is_trusted_request(request.META):
        return None
    if settings.METRICS_TOKEN:
        return _error(401, "not_authenticated", "Send 'Authorization: Bearer <METRICS_TOKEN>'; anonymous "
                                                "scrapes are accepted only from trusted networks.")
    return _error(403, "forbidden", "Metrics are served only to trusted networks (no METRICS_TOKEN is set).")


def _counted() -> bytes:
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if not directory:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


@csrf_exempt
def metrics_view(request) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = _error(405, "method_not_allowed", f"Method {request.method} is not allowed.")
        response["Allow"] = "GET, HEAD"
        return response
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    response = HttpResponse(_counted() + generate_latest(_scrape_time), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
