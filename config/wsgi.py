import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = django_application = get_wsgi_application()

from billing.api.check_wsgi import CheckWSGIFastPath  # noqa: E402  (imports models: after setup)
from config.startup import refuse_unsafe_settings  # noqa: E402  (needs the settings configured above)
from webhooks.wsgi import WebhookWSGIFastPath  # noqa: E402  (imports models: after setup)

refuse_unsafe_settings()



def with_fast_paths(app):
    """The check API's cache hits are answered before Django builds a request (billing/api/check_wsgi.py),
    and so are the stores' webhooks (webhooks/wsgi.py: POST only; the check fast path stays first)."""
    return CheckWSGIFastPath(WebhookWSGIFastPath(app))


application = with_fast_paths(django_application)
