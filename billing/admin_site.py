"""The admin site as people use it (docs/support.md "The admin's layout"): our own sections first, in the
order an agent works (billing, then accounts, webhooks, …), the other installed apps after them, and
dj-stripe's ~40 mirrored models last, as one "Stripe mirror" section that only superusers see.

Installed as the admin's default site by `ConsoleAdminConfig` (config/settings.py, "Support console").
Imports no models: Django loads this module while it reads INSTALLED_APPS."""

from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

# Our sections, in this order; a project app not listed comes after them (alphabetically).
SECTIONS = ("billing", "accounts", "webhooks", "support", "audit", "finance", "reconciliation", "outgoing",
            "operations", "privacy")
# Within a section, these models first (by class name), in this order; the rest alphabetically after.
MODEL_ORDER = {
    "billing": ("Subscription", "StatusChange", "Transaction", "Product", "Entitlement", "Outbox"),
    "accounts": ("Subscriber", "User", "ApiKey"),
}
STRIPE_MIRROR = "djstripe"
STRIPE_MIRROR_NAME = "Stripe mirror"


class SuperuserOnly:
    """Mixed into every dj-stripe ModelAdmin: the mirror is Stripe's data as dj-stripe syncs it, read by
    developers when a sync looks wrong, not a support tool. Granting a staff user dj-stripe permissions
    does not open it; only superusers see it (index, sidebar, its pages)."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return request.user.is_active and request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return (request.user.is_active and request.user.is_superuser
                and super().has_change_permission(request, obj))

    def has_delete_permission(self, request, obj=None):
        return (request.user.is_active and request.user.is_superuser
                and super().has_delete_permission(request, obj))


def _is_ours(app_label: str) -> bool:
    return Path(apps.get_app_config(app_label).path).is_relative_to(Path(settings.BASE_DIR))


def section_key(app_label: str) -> tuple:
    """Ours in SECTIONS order, other project apps, third-party apps, the Stripe mirror last."""
    if app_label == STRIPE_MIRROR:
        return (3, 0, app_label)
    if app_label in SECTIONS:
        return (0, SECTIONS.index(app_label), app_label)
    return (1 if _is_ours(app_label) else 2, 0, app_label)


def model_key(app_label: str, model: dict) -> tuple:
    first = MODEL_ORDER.get(app_label, ())
    name = model["object_name"]
    return (first.index(name), "") if name in first else (len(first), str(model["name"]).lower())


class ConsoleAdminSite(admin.AdminSite):
    site_header = "billing-service"
    site_title = "billing-service admin"
    index_title = "Support and operations console"
    # No model sidebar on every page: at 1280 px it and the filter column left the lists ~600 px (a
    # horizontal scroll on Subscriptions); the index and the breadcrumbs lead everywhere.
    enable_nav_sidebar = False

    def register(self, model_or_iterable, admin_class=None, **options):
        models = [model_or_iterable] if isinstance(model_or_iterable, type) else list(model_or_iterable)
        if any(model._meta.app_label == STRIPE_MIRROR for model in models):
            base = admin_class or admin.ModelAdmin
            admin_class = type(base.__name__, (SuperuserOnly, base), {"__module__": base.__module__})
        return super().register(model_or_iterable, admin_class, **options)

    def get_app_list(self, request, app_label=None):
        app_dict = self._build_app_dict(request, app_label)
        sections = sorted(app_dict.values(), key=lambda app: section_key(app["app_label"]))
        for section in sections:
            if section["app_label"] == STRIPE_MIRROR:
                section["name"] = STRIPE_MIRROR_NAME
            section["models"].sort(key=lambda model, label=section["app_label"]: model_key(label, model))
        return sections


class ConsoleAdminConfig(AdminConfig):
    """django.contrib.admin with ConsoleAdminSite as `admin.site` (autodiscovery as usual)."""

    default_site = "billing.admin_site.ConsoleAdminSite"
