"""The baseline: a bare Django JSON view (no middleware, no database), served exactly like the app."""

from django.conf import settings

settings.configure(DEBUG=False, SECRET_KEY="bench-only", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                   MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def bare(request, user_id):
    return JsonResponse({"ok": True})


urlpatterns = [path("api/subscriptions/check/<str:user_id>", bare)]
application = get_wsgi_application()
