"""System checks (`manage.py check`): warn about each store that is not configured."""

from django.core.checks import Warning, register


@register("billing")
def providers_configured(app_configs, **kwargs):
    from .providers import registry

    messages = []
    for name in registry.store_names():
        try:
            adapter = registry.get_adapter(name)
        except registry.UnknownProvider:
            continue
        missing = adapter.missing_settings()
        if missing:
            messages.append(Warning(
                f"The {name} provider is off: {', '.join(missing)} not set.",
                hint=f"Set {', '.join(missing)} to receive {name} webhooks (see docs/providers/{name}.md).",
                id=f"billing.W_{name.upper()}"))
    return messages
