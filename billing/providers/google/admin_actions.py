"""Django admin actions on Google subscriptions (returned by GoogleAdapter.admin_actions()): revoke
with a full or prorated refund, and defer the next renewal. Each asks for a reason on an intermediate
page, goes to Google first, then re-reads the purchase and applies it. Plus a list filter for
purchases close to their acknowledgement deadline."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.template import engines
from django.template.response import TemplateResponse
from django.utils import timezone

from billing.providers.base import ProviderError
from billing.snapshots import Provider

from . import selectors, services

_PAGE = """{% extends "admin/base_site.html" %}
{% block content %}
<p>{{ intro }}</p>
<ul>{% for sub in subscriptions %}
  <li>{{ sub }} — {{ sub.status }}{% if sub.subscriber %} (user {{ sub.subscriber }}){% endif %}</li>
{% endfor %}</ul>
<form method="post">{% csrf_token %}
  {{ form.as_p }}
  {% for sub in subscriptions %}<input type="hidden" name="_selected_action" value="{{ sub.pk }}">{% endfor %}
  <input type="hidden" name="action" value="{{ action }}">
  <input type="hidden" name="apply" value="1">
  <input type="submit" value="{{ submit }}"> <a href="">Cancel</a>
</form>
{% endblock %}"""


class RevokeForm(forms.Form):
    refund = forms.ChoiceField(choices=[("full", "Full refund"), ("prorated", "Prorated refund (unused time)")])
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Kept in the history.")


class DeferForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=services.MAX_DEFER_DAYS,
                              help_text="The next renewal (and the charge) moves this many days later, free.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Kept in the history.")


def _run(modeladmin, request, queryset, *, form_class, action, title, intro, submit, do):
    subs = list(queryset.filter(provider=Provider.GOOGLE).select_related("subscriber"))
    if not subs:
        modeladmin.message_user(request, "Select Google Play subscriptions.", messages.WARNING)
        return None
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        done, errors = 0, []
        for sub in subs:
            try:
                do(sub, form.cleaned_data, request.user)
                done += 1
            except (services.StoreActionError, ProviderError) as exc:
                errors.append(f"{sub}: {exc}")
        if done:
            modeladmin.message_user(request, f"{title}: {done} subscription(s) done at Google and re-read.",
                                    messages.SUCCESS)
        for error in errors:
            modeladmin.message_user(request, error, messages.ERROR)
        return None
    context = {**modeladmin.admin_site.each_context(request), "title": title, "intro": intro, "form": form,
               "subscriptions": subs, "action": action, "submit": submit, "opts": modeladmin.model._meta}
    template = engines["django"].from_string(_PAGE)
    return TemplateResponse(request, template, context)


@admin.action(description="Google: revoke with a refund (access ends now)")
def google_revoke_with_refund(modeladmin, request, queryset):
    return _run(modeladmin, request, queryset, form_class=RevokeForm, action="google_revoke_with_refund",
                title="Revoke at Google Play", submit="Revoke and refund",
                intro="Google refunds the user and ends access at once. This cannot be undone.",
                do=lambda sub, data, user: services.subscription_revoke_at_google(
                    subscription=sub, refund=data["refund"], reason=data["reason"], staff_user=user))


@admin.action(description="Google: defer the next renewal (free extension)")
def google_defer_renewal(modeladmin, request, queryset):
    return _run(modeladmin, request, queryset, form_class=DeferForm, action="google_defer_renewal",
                title="Defer renewal at Google Play", submit="Defer",
                intro="The user keeps access and is charged later.",
                do=lambda sub, data, user: services.subscription_defer_at_google(
                    subscription=sub, days=data["days"], reason=data["reason"], staff_user=user))


ACTIONS = (google_revoke_with_refund, google_defer_renewal)


class AcknowledgementDeadlineFilter(admin.SimpleListFilter):
    """Google purchases not acknowledged yet: Google refunds them 3 days after purchase."""

    title = "Google acknowledgement"
    parameter_name = "google_ack"

    def lookups(self, request, model_admin):
        return [("24h", "due within 24 hours"), ("awaiting", "awaiting acknowledgement"),
                ("overdue", "deadline passed")]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        if self.value() == "overdue":
            ids = selectors.subscriptions_awaiting_acknowledgement(include_overdue_days=30).filter(
                acknowledgement_due_at__lt=timezone.now())
        elif self.value() == "24h":
            ids = selectors.subscriptions_awaiting_acknowledgement(due_within=timedelta(hours=24))
        else:
            ids = selectors.subscriptions_awaiting_acknowledgement()
        return queryset.filter(pk__in=ids.values("pk"))
