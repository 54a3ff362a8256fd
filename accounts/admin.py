"""Admin for staff users, subscribers (found by any of their ids) and API keys (raw key shown once)."""

import uuid
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils import timezone
from django.utils.html import format_html

from billing.admin import GrantForm, admin_link, do_grant, run_with_form
from billing.models import Subscription

from .models import ApiKey, Subscriber, User
from .services import api_key_create, api_key_revoke


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    pass


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    fk_name = "subscriber"
    fields = ("link", "provider", "status", "product", "expires_at", "environment", "entitled_now", "superseded")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-created_at",)
    verbose_name_plural = "subscriptions (newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="subscription")
    def link(self, obj):
        return admin_link(obj, obj.provider_subscription_id)

    @admin.display(boolean=True, description="entitled now")
    def entitled_now(self, obj):
        return obj.is_entitled(timezone.now())

    @admin.display(boolean=True, description="superseded")
    def superseded(self, obj):
        return obj.replaced_by_id is not None


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ("external_id", "email", "stripe_customer_id", "apple_app_account_token",
                    "google_obfuscated_account_id", "xsolla_user_id", "created_at")
    search_fields = ("=external_id", "email", "=stripe_customer_id", "=google_obfuscated_account_id",
                     "=xsolla_user_id", "=subscriptions__provider_subscription_id")
    search_help_text = "User id, email, a store's customer id / account token, or a store subscription id"
    fieldsets = (
        (None, {"fields": ("external_id", "email")}),
        ("Store identities", {"fields": ("stripe_customer_id", "apple_app_account_token",
                                         "google_obfuscated_account_id", "xsolla_user_id"),
                              "description": "How each store's events find this user. Each belongs to one user."}),
        (None, {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = ("created_at", "updated_at")
    inlines = (SubscriptionInline,)
    actions = ("grant_access",)

    def has_fix_permission(self, request):
        return request.user.has_perm("billing.change_subscription")  # as for the subscriptions' own actions

    def get_readonly_fields(self, request, obj=None):
        # The app's user id is the key everything (events, cache, API) is addressed by: fixed once made.
        return self.readonly_fields + (("external_id",) if obj is not None else ())

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            token = uuid.UUID(search_term.strip())
        except (ValueError, AttributeError):
            return queryset, may_have_duplicates
        return queryset | self.model.objects.filter(apple_app_account_token=token), may_have_duplicates

    @admin.action(description="Grant access (a staff grant)", permissions=["fix"])
    def grant_access(self, request, queryset):
        return run_with_form(self, request, queryset, form_class=GrantForm, title="Grant access",
                             intro="Each selected user gets a new staff grant (provider: manual).", submit="Grant",
                             do=partial(do_grant, lambda subscriber: subscriber, request))


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=[(s, s) for s in ApiKey.SCOPES], widget=forms.CheckboxSelectMultiple,
                                       help_text="check: the check API; read: list APIs; verify: purchase "
                                                 "verification; manage: Stripe writes, cancel, change plan")

    class Meta:
        model = ApiKey
        fields = ("name", "scopes")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "prefix", "scope_list", "active", "created_at", "created_by", "last_used_at",
                    "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "=prefix")
    actions = ("revoke",)

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = ApiKeyForm if obj is None else forms.ModelForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "scopes")
        return ("name", "prefix", "scope_list", "created_at", "created_by", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        # A key's scopes are fixed: to change what a caller may do, make a new key and revoke the old.
        if obj is None:
            return ()
        return ("prefix", "scope_list", "created_at", "created_by", "last_used_at", "revoked_at")

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row keeps who had access, and when

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(boolean=True, description="active")
    def active(self, obj):
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        key, raw = api_key_create(name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"],
                                  created_by=request.user)
        obj.pk, obj.prefix, obj.hashed_key, obj.scopes, obj.created_at = (key.pk, key.prefix, key.hashed_key,
                                                                          key.scopes, key.created_at)
        obj.created_by = request.user
        obj._state.adding = False
        self.message_user(request, format_html(
            "The new key (shown this once; only its hash is kept): <code style='user-select: all'>{}</code> "
            "— use it as <code>Authorization: Api-Key &lt;key&gt;</code>.", raw), messages.WARNING)

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        keys = [api_key_revoke(prefix=key.prefix) for key in queryset.filter(revoked_at__isnull=True)]
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)
