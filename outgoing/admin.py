"""Outgoing webhooks in the admin: endpoints (URL, filters, active; the secret revealed to superusers
only), and every delivery with its attempts and their answers; resend by hand."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from billing.admin.toolkit import ReadOnlyAdmin, ReadOnlyInline, admin_link, danger, pretty_json

from .dispatch import deliveries_resend
from .models import Attempt, Delivery, Endpoint, secret_generate


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https", help_text="Receives a signed POST per status change.")
    new_statuses = forms.MultipleChoiceField(choices=Endpoint.STATUS_CHOICES, required=False,
                                             widget=forms.CheckboxSelectMultiple,
                                             help_text="Only changes to these statuses (none ticked: all).")
    providers = forms.MultipleChoiceField(choices=Endpoint.PROVIDER_CHOICES, required=False,
                                          widget=forms.CheckboxSelectMultiple,
                                          help_text="Only these providers (none ticked: all).")

    class Meta:
        model = Endpoint
        fields = ("url", "description", "active", "new_statuses", "providers")

    def clean_url(self):
        url = self.cleaned_data["url"]
        if not url.lower().startswith("https://") and not settings.OUTGOING_WEBHOOK_ALLOW_HTTP:
            raise ValidationError("Use an https:// URL (http:// only with OUTGOING_WEBHOOK_ALLOW_HTTP).")
        return url


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ("url", "description", "active", "kinds", "pending", "dead", "created_at")
    list_filter = ("active",)
    search_fields = ("url", "description")
    actions = ("roll_secret",)

    @admin.display(description="event kinds")
    def kinds(self, obj):
        statuses = ", ".join(obj.new_statuses) or "every status"
        providers = ", ".join(obj.providers) or "every provider"
        return f"{statuses}; {providers}"

    @admin.display(description="pending")
    def pending(self, obj):
        return obj.deliveries.filter(status=Delivery.Status.PENDING).count()

    @admin.display(description="dead")
    def dead(self, obj):
        count = obj.deliveries.filter(status=Delivery.Status.DEAD).count()
        return danger(str(count)) if count else "0"

    @admin.display(description="signing secret")
    def secret_full(self, obj):
        return format_html("<code>{}</code>", obj.secret) if obj and obj.pk else "generated when saved"

    @admin.display(description="signing secret")
    def secret_masked(self, obj):
        return f"{obj.secret[:10]}… (superusers see it in full)" if obj and obj.pk else "generated when saved"

    def get_readonly_fields(self, request, obj=None):
        """Superusers see the secret (to give it to the consumer); other staff see that it exists."""
        secret = "secret_full" if request.user.is_superuser else "secret_masked"
        return (secret, "created_at", "updated_at")

    @admin.action(description="Roll the signing secret (the consumer must be given the new one)")
    def roll_secret(self, request, queryset):
        if not request.user.is_superuser:
            self.message_user(request, "Only superusers may roll secrets.", messages.ERROR)
            return
        for endpoint in queryset:
            endpoint.secret = secret_generate()
            endpoint.save(update_fields=["secret", "updated_at"])
        self.message_user(request, f"New secrets for {queryset.count()} endpoint(s).", messages.SUCCESS)


class AttemptInline(ReadOnlyInline):
    model = Attempt
    fields = ("number", "started_at", "duration_ms", "status_code", "ok", "error", "response_body")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "event_id", "change", "endpoint", "status", "attempts", "next_attempt_at",
                    "delivered_at", "last_error")
    list_filter = ("status", "endpoint")
    search_fields = ("=event__event_id", "event__payload__userId")
    date_hierarchy = "created_at"
    fields = ("endpoint_link", "status", "attempts", "next_attempt_at", "failing_since", "delivered_at",
              "last_error", "created_at", "event_pretty")
    readonly_fields = fields
    inlines = (AttemptInline,)
    actions = ("resend",)
    list_select_related = ("endpoint", "event")

    @admin.display(description="event")
    def event_id(self, obj):
        return obj.event.event_id

    @admin.display(description="change")
    def change(self, obj):
        return f"{obj.event.payload.get('oldStatus')} → {obj.event.payload.get('newStatus')}"

    @admin.display(description="endpoint")
    def endpoint_link(self, obj):
        return admin_link(obj.endpoint)

    @admin.display(description="body sent")
    def event_pretty(self, obj):
        return pretty_json(obj.event.payload)

    @admin.action(description="Resend now")
    def resend(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        deliveries_resend(ids)
        self.message_user(request, f"{len(ids)} deliveries sent again (attempts below each).", messages.SUCCESS)
