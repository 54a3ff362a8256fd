"""Refusals at the start of a serving process (`web` under granian or gunicorn, runserver, a Celery
worker or beat): settings that must never reach production. Management commands such as
`makemigrations --check` still run."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

TESTING_IN_PRODUCTION = (
    "BILLING_TESTING=1 with DEBUG off: refusing to start. BILLING_TESTING is for the test suite only (it "
    "brings a development SECRET_KEY and turns Apple's certificate revocation checks off). Unset "
    "BILLING_TESTING in this deployment (or set DEBUG=1 on a developer machine).")


def refuse_unsafe_settings() -> None:
    """Raises ImproperlyConfigured when this process must not serve with the current settings."""
    if settings.TESTING and not settings.DEBUG and not settings.BILLING_TESTING_ALLOWED:
        raise ImproperlyConfigured(TESTING_IN_PRODUCTION)
