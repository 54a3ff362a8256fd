"""Provider name (as in /webhooks/<provider>) → adapter. Adapters load lazily: a deployment that uses
one store does not import the others' libraries at start-up."""

import os
from importlib import import_module

from django.conf import settings

from .base import ProviderAdapter

_PATHS = {
    "stripe": "billing.providers.stripe.adapter:StripeAdapter",
    "apple": "billing.providers.apple.adapter:AppleAdapter",
    "google": "billing.providers.google.adapter:GoogleAdapter",
    "xsolla": "billing.providers.xsolla.adapter:XsollaAdapter",
    "manual": "billing.providers.manual:ManualAdapter",
}
_instances: dict[str, ProviderAdapter] = {}


class UnknownProvider(LookupError):
    pass


def register(name: str, adapter: ProviderAdapter) -> None:
    """Register (or replace) an adapter instance; tests use this for adapters of their own."""
    _instances[name] = adapter


def unregister(name: str) -> None:
    _instances.pop(name, None)


def _extra_paths() -> dict[str, str]:
    """Test-only adapters for other processes (a Celery worker, a server started by a test):
    BILLING_EXTRA_ADAPTERS="name=package.module:Class,..." is honoured only when BILLING_TESTING is set."""
    raw = os.environ.get("BILLING_EXTRA_ADAPTERS", "")
    if not raw or not settings.TESTING:
        return {}
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {name.strip(): path.strip() for name, path in pairs}


def names() -> list[str]:
    return sorted(set(_PATHS) | set(_instances) | set(_extra_paths()))


def store_names() -> list[str]:
    """The real stores (not the manual provider nor test adapters)."""
    return [n for n in _PATHS if n != "manual"]


def get_adapter(name: str) -> ProviderAdapter:
    adapter = _instances.get(name)
    if adapter is not None:
        return adapter
    path = _PATHS.get(name) or _extra_paths().get(name)
    if path is None:
        raise UnknownProvider(name)
    module_name, _, class_name = path.partition(":")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UnknownProvider(name) from exc  # adapter not built yet
        raise
    adapter = getattr(module, class_name)()
    _instances[name] = adapter
    return adapter
