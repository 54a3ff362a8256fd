"""Provider name (as in /webhooks/<provider>) → adapter, from settings.BILLING_PROVIDERS. Adapters
load lazily: a deployment that uses one store does not import the others' libraries at start-up."""

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from billing.snapshots import Provider

from .base import ProviderAdapter

_instances: dict[str, ProviderAdapter] = {}


class UnknownProvider(LookupError):
    pass


def names() -> list[str]:
    return sorted(settings.BILLING_PROVIDERS)


def store_names() -> list[str]:
    """The real stores (not the manual provider, nor an adapter a test suite adds)."""
    return [n for n in settings.BILLING_PROVIDERS if n in Provider.ALL and n != Provider.MANUAL]


def get_adapter(name: str) -> ProviderAdapter:
    adapter = _instances.get(name)
    if adapter is None:
        path = settings.BILLING_PROVIDERS.get(name)
        if path is None:
            raise UnknownProvider(name)
        adapter = _instances[name] = import_string(path)()
    return adapter


@receiver(setting_changed)
def _providers_changed(*, setting, **kwargs):
    if setting == "BILLING_PROVIDERS":
        _instances.clear()
