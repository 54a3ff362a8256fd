"""System checks (`manage.py check`, and every command that starts the web server): warn about each
store that is not configured, and report what each store's adapter checks of its own configuration
(`ProviderAdapter.checks()`, e.g. the roots a store's signatures must chain to)."""

from django.core.checks import Error, Warning, register

from .providers.common import store_adapters


@register("billing")
def providers_configured(app_configs, **kwargs):
    messages = []
    for name, adapter in store_adapters():
        if adapter is None:
            messages.append(Error(f"The {name} adapter cannot be loaded (see the log).",
                                  id=f"billing.E_{name.upper()}"))
            continue
        messages.extend(adapter.checks())
        missing = adapter.missing_settings()
        if missing:
            messages.append(Warning(
                f"The {name} provider is off: {', '.join(missing)} not set.",
                hint=f"Set {', '.join(missing)} to receive {name} webhooks (see docs/providers/{name}.md).",
                id=f"billing.W_{name.upper()}"))
    return messages
