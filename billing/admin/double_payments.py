"""The double payments queue: a customer paying twice for one entitlement (billing/double_payments.py),
with both subscriptions, since when, links to where the store actions are (refund or cancel one at its
store), and resolve / dismiss with a reason (kept in the audit log)."""

from django.contrib import admin
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing.double_payments import CannotClose, double_payment_close
from billing.models import DoublePayment
from billing.snapshots import Provider

from .toolkit import ReadOnlyAdmin, ReasonForm, admin_link, confirm_action


class StoreFilter(admin.SimpleListFilter):
    title = "store (either subscription)"
    parameter_name = "store"

    def lookups(self, request, model_admin):
        return [(p, label) for p, label in Provider.CHOICES if p != Provider.MANUAL]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(Q(first__provider=self.value()) | Q(second__provider=self.value()))
        return queryset


@admin.register(DoublePayment)
class DoublePaymentAdmin(ReadOnlyAdmin):
    list_display = ("number", "user", "entitlement_names", "first_subscription", "second_subscription",
                    "store_actions", "since", "status")
    list_filter = ("status", StoreFilter, "detected_by")
    list_select_related = ("subscriber", "first", "second")
    search_fields = ("=subscriber__external_id", "=first__provider_subscription_id",
                     "=second__provider_subscription_id")
    search_help_text = "User id or a store subscription id"
    date_hierarchy = "detected_at"
    fields = ("user", "entitlement_names", "first_subscription", "second_subscription", "since", "detected_at",
              "detected_by", "status", "store_actions", "closed_at", "closed_by", "close_reason")
    readonly_fields = fields
    actions = ("resolve", "dismiss")

    def has_fix_permission(self, request):
        return request.user.has_perm("billing.change_subscription")  # who may act on subscriptions

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("subscriber", "first", "second", "closed_by")

    @admin.display(description="#", ordering="pk")
    def number(self, obj):
        return obj.pk

    @admin.display(description="user", ordering="subscriber__external_id")
    def user(self, obj):
        return admin_link(obj.subscriber)

    @admin.display(description="entitlements")
    def entitlement_names(self, obj):
        return ", ".join(obj.entitlements)

    @admin.display(description="first subscription")
    def first_subscription(self, obj):
        return _subscription(obj.first)

    @admin.display(description="second subscription")
    def second_subscription(self, obj):
        return _subscription(obj.second)

    @admin.display(description="store actions")
    def store_actions(self, obj):
        """The store actions (refund, cancel at the store) are the subscriptions list's actions: both rows,
        listed together, ready to select; and each one's page."""
        both = reverse("admin:billing_subscription_changelist") + f"?id__in={obj.first_id},{obj.second_id}"
        pages = format_html_join(" · ", '<a href="{}">{}</a>', (
            (reverse("admin:billing_subscription_change", args=[s.pk]), f"{s.provider} {s.pk}")
            for s in (obj.first, obj.second)))
        return format_html('<a href="{}">refund or cancel one at its store</a> ({})', both, pages)

    @admin.action(description="Resolve (one was refunded or cancelled at its store)", permissions=["fix"])
    def resolve(self, request, queryset):
        return self._close(request, queryset, DoublePayment.Status.RESOLVED, "Resolve double payments",
                           "Say what was done (e.g. the App Store subscription refunded through Apple support).")

    @admin.action(description="Dismiss (not a double payment to act on)", permissions=["fix"])
    def dismiss(self, request, queryset):
        return self._close(request, queryset, DoublePayment.Status.DISMISSED, "Dismiss double payments",
                           "Say why nothing is to be done (e.g. the customer wants both). A dismissed pair is "
                           "not reopened.")

    def _close(self, request, queryset, outcome, title, intro):
        def do(row, data):
            try:
                double_payment_close(double_payment=row, outcome=outcome, reason=data["reason"],
                                     staff_user=request.user)
            except CannotClose as exc:
                raise ValueError(str(exc)) from None
            return outcome

        return confirm_action(self, request, queryset.select_related("subscriber"), form_class=ReasonForm,
                              title=title, intro=intro, submit=title.split()[0], do=do)


def _subscription(sub) -> str:
    return format_html("{} <small>({}, {}{})</small>", admin_link(sub), sub.status, sub.store_product_id or "?",
                       f", since {sub.started_at:%Y-%m-%d}" if sub.started_at else "")
