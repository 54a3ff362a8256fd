"""Admin for the raw event audit table: read-only, searchable by the store's own ids, with replay and
(for events that produced an orphan subscription) linking the subscription to a user."""

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from accounts.models import Subscriber
from billing import staff
from billing.admin.toolkit import ReadOnlyMixin, confirm_action
from billing.models import Subscription

from . import bodies, replay
from .models import WebhookEvent


def _pretty(value) -> str:
    """JSON pretty-printed; any bytes shown as they are (hostile ones too: a body that is not UTF-8,
    not JSON or nested too deep is shown as text, a NUL or a lone surrogate escaped, never a 500)."""
    if isinstance(value, (bytes, memoryview)):
        raw = bytes(value)
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            return bodies.escaped(raw.decode("utf-8", errors="backslashreplace"))
    try:
        return bodies.escaped(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))
    except (ValueError, RecursionError):  # nested deeper than the encoder goes
        return "(too deeply nested to show: see the raw body)"


def _pre(text: str):
    return format_html('<pre style="white-space: pre-wrap; max-height: 40em; overflow: auto">{}</pre>', text)


class OrphanFilter(admin.SimpleListFilter):
    title = "subscription without user"
    parameter_name = "orphan"

    def lookups(self, request, model_admin):
        return [("yes", "produced an orphan subscription")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            orphans = Subscription.objects.filter(webhook_events=OuterRef("pk"), subscriber__isnull=True)
            return queryset.filter(Exists(orphans))
        return queryset


class LinkSubscriberForm(forms.Form):
    external_id = forms.CharField(label="User id (the app's)", max_length=255)

    def clean_external_id(self):
        value = self.cleaned_data["external_id"].strip()
        subscriber = Subscriber.objects.filter(external_id=value).first()
        if subscriber is None:
            raise forms.ValidationError(f"No user with id {value!r}.")
        self.cleaned_data["subscriber"] = subscriber
        return value


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "provider", "event_type", "status", "attempts", "received_at", "processed_at",
                    "linked_subscriptions", "dedupe_key")
    list_filter = ("status", "provider", "environment", OrphanFilter, "received_at")
    # The store's ids (event id, subscription id, purchase token, transaction id) are in store_ids_text.
    search_fields = ("=dedupe_key", "store_ids_text", "event_type")
    search_help_text = "An event id, subscription id, purchase token or transaction id of the store"
    date_hierarchy = "received_at"
    list_per_page = 50
    show_full_result_count = False
    actions = ["replay_events", "link_orphans"]
    fieldsets = [
        (None, {"fields": ("provider", "event_type", "dedupe_key", "status", "outcome", "linked_subscriptions")}),
        ("Processing", {"fields": ("attempts", "next_attempt_at", "failing_since", "done_while_failing", "received_at",
                                   "occurred_at", "processed_at", "environment", "error", "traceback_text")}),
        ("Content", {"fields": ("store_ids", "payload_problem", "body_pretty", "payload_pretty", "headers_pretty")}),
    ]
    readonly_fields = ("provider", "event_type", "dedupe_key", "status", "outcome", "linked_subscriptions",
                       "attempts", "next_attempt_at", "failing_since", "done_while_failing",
                       "received_at", "occurred_at", "processed_at", "environment", "error", "traceback_text",
                       "store_ids", "payload_problem", "body_pretty", "payload_pretty", "headers_pretty")

    def get_queryset(self, request):
        queryset = super().get_queryset(request).prefetch_related("subscriptions")
        match = request.resolver_match
        if match is not None and match.url_name.endswith("_changelist"):
            queryset = queryset.defer("body", "headers", "payload", "traceback")  # the list shows none of them
        return queryset

    # read-only (ReadOnlyMixin): events are the audit; they change only through processing and replay
    def has_replay_permission(self, request):
        return request.user.has_perm("webhooks.change_webhookevent")

    def has_link_permission(self, request):
        return request.user.has_perm("billing.change_subscription")

    @admin.display(description="subscriptions")
    def linked_subscriptions(self, obj):
        subs = list(obj.subscriptions.all())
        answer = _consumption_request_link(obj)
        if not subs:
            return answer or "—"
        return format_html("{} {}", format_html_join(", ", "{}", ((self._subscription_link(s),) for s in subs)), answer)

    def _subscription_link(self, sub):
        label = f"{sub.provider}:{sub.provider_subscription_id}" + ("" if sub.subscriber_id else " (no user)")
        try:
            url = reverse("admin:billing_subscription_change", args=[sub.pk])
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="traceback")
    def traceback_text(self, obj):
        return _pre(obj.traceback) if obj.traceback else "—"

    @admin.display(description="raw body")
    def body_pretty(self, obj):
        return _pre(_pretty(obj.body))

    @admin.display(description="verified content")
    def payload_pretty(self, obj):
        return _pre(_pretty(obj.payload))

    @admin.display(description="headers")
    def headers_pretty(self, obj):
        return _pre(_pretty(obj.headers))

    @admin.action(description="Replay the selected events (reset attempts, process again)", permissions=["replay"])
    def replay_events(self, request, queryset):
        def do(event, data):
            replay.event_replay_by_staff(event=event, reason=data["reason"], staff_user=request.user)
            return "queued for replay"

        return confirm_action(self, request, queryset.prefetch_related("subscriptions__subscriber"), do=do,
                              form_class=forms.Form, title="Replay events", submit="Replay",
                              intro="Each event is put back to 'received' with its attempts reset and processed "
                                    "again by the workers.")

    @admin.action(description="Link their subscriptions without user to a user", permissions=["link"])
    def link_orphans(self, request, queryset):
        orphans = list(Subscription.objects.filter(webhook_events__in=queryset, subscriber__isnull=True).distinct())
        if not orphans:
            self.message_user(request, "The selected events have no subscription without user.", messages.WARNING)
            return None

        def do(sub, data):
            staff.subscription_move(subscription=sub, subscriber=data["subscriber"], reason=data["reason"],
                                    staff_user=request.user, allow_move=False)
            return f"linked to user {data['subscriber'].external_id}; their status is published"

        return confirm_action(self, request, queryset, objects=orphans, form_class=LinkSubscriberForm,
                              title="Link subscriptions to a user", submit="Link", do=do,
                              intro="These subscriptions have no user. Linking one records a status change with "
                                    "your name and publishes the user's status on the event stream.")


def _consumption_request_link(event) -> str:
    """An Apple CONSUMPTION_REQUEST: the button staff answer it with (billing/providers/apple/admin.py)."""
    if event.provider != "apple":
        return ""
    # Imported late: Apple's library is loaded only where Apple's events are shown (providers load lazily).
    from billing.providers.apple.admin import consumption_request_link

    return consumption_request_link(event)
