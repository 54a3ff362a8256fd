"""The project's URLs plus views that log and fail, to see the lines of one request."""

import logging

from django.http import JsonResponse
from django.urls import path

from config.urls import handler400, handler404, handler500, urlpatterns  # noqa: F401  (Django reads the handlers)

logger = logging.getLogger("tests.operations.view")


def logs(request):
    logger.info("inside the view")
    logger.warning("inside the view, a warning")
    return JsonResponse({"ok": True})


def fails(request):
    logger.info("about to fail")
    raise RuntimeError("a bug")


urlpatterns = [path("api/logs", logs), path("api/fails", fails), *urlpatterns]
