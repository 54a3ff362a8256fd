"""System checks of the production settings this app is responsible for: end-user tokens that would all
be refused, and BILLING_TESTING in a deployment (`manage.py check --deploy`)."""

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from config.startup import refuse_unsafe_settings

from .authentication import jwt_missing_settings


@register("accounts")
def jwt_settings(app_configs, **kwargs):
    # Only a deployment that accepts end-user tokens at all (a key is set) is told what else it lacks.
    if not (settings.JWT_SECRET or settings.JWT_PUBLIC_KEY):
        return []
    missing = jwt_missing_settings()
    if not missing:
        return []
    return [Error(f"End-user tokens are all refused: {', '.join(missing)} not set.",
                  hint="Name the audience and issuer your apps' auth server puts in its tokens (docs/deploy.md).",
                  id="accounts.E001")]


@register("accounts", deploy=True)
def testing_mode(app_configs, **kwargs):
    try:
        refuse_unsafe_settings()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="accounts.E002")]
    return []
