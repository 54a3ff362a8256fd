"""What every admin page of this project shares: read-only options, display helpers, the date and
reason fields, and the one confirm-action page every staff action with input goes through (billing's
own actions, each store's actions in billing/providers/<store>/admin.py, the webhook events' link)."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.money import format_minor
from billing.providers.base import ProviderError
from billing.staff import StaffActionError

CONFIRM_TEMPLATE = "admin/confirm_action.html"


# --- read-only ---------------------------------------------------------------------------------

class ReadOnlyMixin:
    """Rows written only by the services (provider-synced, ledgers, audit): viewed, never edited here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    pass


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


# --- display -----------------------------------------------------------------------------------

def pretty_json(data) -> str:
    return format_html("<pre style='white-space: pre-wrap; max-width: 70em'>{}</pre>",
                       json.dumps(data or {}, indent=2, sort_keys=True, ensure_ascii=False))


def money(amount_minor, currency) -> str:
    return format_minor(amount_minor, currency)  # display only; stored as integer minor units


def admin_link(obj, label=None) -> str:
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else obj)


def danger(text: str) -> str:
    """Text staff must not miss (an orphan, a deadline, a product granting nothing)."""
    return format_html("<strong style='color:#ba2121'>{}</strong>", text)


def period(obj) -> str:
    return f"{obj.period_value} {obj.period_unit}" if obj.period_unit else "—"


# --- form fields -------------------------------------------------------------------------------

class UntilField(forms.DateTimeField):
    """A date (end of that day, UTC) or a date and time, in UTC."""

    def __init__(self, **kwargs):
        kwargs.setdefault("input_formats", ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"])
        kwargs.setdefault("widget", forms.DateTimeInput(attrs={"placeholder": "YYYY-MM-DD [HH:MM] UTC"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        result = super().to_python(value)
        if result is not None and isinstance(value, str) and len(value.strip()) == 10:
            result = datetime.combine(result.date(), time(23, 59, 59))
        if result is not None and timezone.is_naive(result):
            result = result.replace(tzinfo=UTC)
        return result


REASON = partial(forms.CharField, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                 help_text="Required. Kept in the audit log and the subscription's history with your name.")


class ReasonForm(forms.Form):
    reason = REASON()


def with_reason(form_class):
    """`form_class` with the required `reason` textarea (trimmed; blank refused) if it has none: every
    staff change says why. A form that declares its own `reason` field keeps it."""
    if "reason" in form_class.base_fields:
        return form_class
    return type(form_class)(form_class.__name__, (form_class,), {"reason": REASON()})


# --- the confirm-action page -------------------------------------------------------------------

ACTION_ERRORS = (StaffActionError, ProviderError, ValueError)


def confirm_action(modeladmin, request, queryset, *, form_class, title, intro, submit, do, objects=None,
                   form_kwargs=None, reason=True):
    """An action with an intermediate page: show the form for the selected rows; on submit call
    `do(obj, cleaned_data)` for each of `objects` (default: the selected rows). `do` returns a message,
    or raises one of ACTION_ERRORS: shown to staff, and the other objects still run.

    The page always asks for a reason (`cleaned_data["reason"]`, required, trimmed; the form gets the
    field if it has none) unless the action opts out with `reason=False`: `do` records it in the audit
    log (audit.records.record) with the change."""
    objects = list(queryset) if objects is None else list(objects)
    if reason:
        form_class = with_reason(form_class)
    form_kwargs = form_kwargs or {}
    form = form_class(request.POST, **form_kwargs) if "apply" in request.POST else form_class(**form_kwargs)
    if "apply" in request.POST and form.is_valid():
        done = 0
        for obj in objects:
            try:
                note = do(obj, form.cleaned_data)
            except ACTION_ERRORS as exc:
                modeladmin.message_user(request, f"{obj}: {exc}", messages.ERROR)
                continue
            done += 1
            if note:
                modeladmin.message_user(request, f"{obj}: {note}", messages.SUCCESS)
        if done and len(objects) > 1:
            modeladmin.message_user(request, f"{title}: {done} of {len(objects)} done.", messages.SUCCESS)
        return None
    context = {**modeladmin.admin_site.each_context(request), "title": title, "intro": intro, "form": form,
               "objects": objects, "selected": list(queryset.values_list("pk", flat=True)),
               "action": request.POST.get("action", ""), "submit": submit, "opts": modeladmin.model._meta,
               "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


def store_action(name: str, *, description: str, provider: str, store: str, run,
                 permission: str = "billing.change_subscription", describe=None, **page):
    """A store's own admin action (billing/providers/<store>/admin.py): the confirm-action page (`page`:
    form_class, title, intro, submit), then `run(subscription, cleaned_data, staff_user)` → a message,
    for each of that store's subscriptions among those selected. Offered in the changelist's actions and
    as a button on each of that store's subscription pages (billing/admin/subscriptions.py), only to
    staff holding `permission` (refunds: billing.refund_at_store; the rest: billing.change_subscription).
    `describe(subscription)` → a line added to the intro on one subscription's page (e.g. what can be
    refunded); it may ask the store, and a store error only leaves the line out."""

    def action(modeladmin, request, queryset):
        if not request.user.has_perm(permission):
            raise PermissionDenied
        subscriptions = queryset.filter(provider=provider).select_related("subscriber")
        if not subscriptions.exists():
            modeladmin.message_user(request, f"Select {store} subscriptions.", messages.WARNING)
            return None
        return confirm_action(modeladmin, request, subscriptions, **page,
                              do=lambda subscription, data: run(subscription, data, request.user))

    action.__name__ = name
    action.store_action = StoreAction(name=name, description=description, provider=provider, store=store,
                                      permission=permission, run=run, page=page, describe=describe)
    return admin.action(description=description)(action)


@dataclass(frozen=True)
class StoreAction:
    """What the subscription page needs to offer a store action as a button and run it for one row."""

    name: str
    description: str
    provider: str
    store: str
    permission: str
    run: object
    page: dict
    describe: object = None
