"""Admin for staff users and API keys. A new key's secret is shown once, on the page that answers the
form (never in a message, which Django keeps in a cookie, nor anywhere it could be shown again).
Subscribers, which carry subscriptions, are in billing/admin/subscribers.py."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.template.response import TemplateResponse

from .models import ApiKey, User
from .services import api_key_create, api_key_revoke


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    pass


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
        request._new_api_key = raw  # for response_add, in this request only

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(request, "_new_api_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "original": obj,
                   "title": f"API key {obj.name!r} created", "raw_key": raw}
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"  # not kept by the browser or a proxy: shown this once
        return response

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        keys = [api_key_revoke(prefix=key.prefix) for key in queryset.filter(revoked_at__isnull=True)]
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)
