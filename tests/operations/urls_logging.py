"""The project's URLs plus views that log and fail, to see the lines of one request."""

import logging

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import handler400, handler404, handler500, urlpatterns  # noqa: F401  (Django reads the handlers)

logger = logging.getLogger("tests.operations.view")


def logs(request):
    logger.info("inside the view")
    logger.warning("inside the view, a warning")
    return JsonResponse({"ok": True})


@csrf_exempt
def fails(request):
    logger.info("about to fail for %s", request.GET.get("email", "nobody"))
    raise RuntimeError("a bug")


urlpatterns = [path("api/logs", logs), path("api/fails", fails), *urlpatterns]
