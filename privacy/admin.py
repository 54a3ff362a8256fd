"""The erasures' record (read-only) and the subscribers admin's "Erase personal data" action, added to
billing's SubscriberAdmin by PrivacyConfig.ready() (nothing imports privacy)."""

from django import forms
from django.contrib import admin

from billing.admin.toolkit import REASON, ReadOnlyAdmin, confirm_action

from .erasure import ErasureRefused, live_paid_subscriptions, subscriber_erase
from .models import Erasure


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    list_display = ("pseudonym", "created_at", "actor_label", "forced", "reason")
    search_fields = ("=pseudonym",)
    fields = ("pseudonym", "created_at", "actor_label", "actor_user", "forced", "reason", "counts")
    readonly_fields = fields


class EraseForm(forms.Form):
    reason = REASON(help_text="Required: e.g. the privacy request's ticket. Recorded with your name.")
    force = forms.BooleanField(required=False, label="Erase even while a paid subscription is live",
                               help_text="It is revoked here, NOT at the store: the store keeps charging until "
                                         "it is cancelled there.")


def _intro(subscribers) -> str:
    live = [f"{s}: {', '.join(str(sub) for sub in subs)}" for s in subscribers
            if (subs := live_paid_subscriptions(s))]
    text = ("Each selected customer's e-mail, store identities, raw webhook bodies and headers, notes and raw store "
            "data are erased; their user id becomes a pseudonym; the ledger and the subscriptions are kept under it "
            "(finance totals do not change); whatever still entitles them is revoked and published on the event "
            "stream. This cannot be undone. Run `manage.py erase_subscriber <user id> --reason … --dry-run` to see "
            "the counts first.")
    if live:
        text += (" Still paying at a store (refused unless forced; cancel it at the store): " + "; ".join(live) + ".")
    return text


@admin.action(description="Erase personal data (privacy request)", permissions=["erase"])
def erase_personal_data(modeladmin, request, queryset):
    subscribers = list(queryset)

    def do(subscriber, data):
        try:
            report = subscriber_erase(subscriber=subscriber, reason=data["reason"], force=data["force"],
                                      actor=request.user)
        except ErasureRefused as exc:
            raise ValueError(str(exc)) from None
        subscriber.external_id = report.pseudonym  # the message names the pseudonym, not the erased id
        return f"erased (erasure {report.erasure_id}); revoked: {', '.join(report.revoked) or 'nothing'}"

    return confirm_action(modeladmin, request, queryset, form_class=EraseForm, title="Erase personal data",
                          intro=_intro(subscribers), submit="Erase", do=do, objects=subscribers)


def install_subscriber_action(site=admin.site) -> None:
    from accounts.models import Subscriber  # models are loaded only now (called from ready())

    model_admin = site._registry.get(Subscriber)
    if model_admin is None or erase_personal_data in model_admin.actions:
        return
    model_admin.actions = (*model_admin.actions, erase_personal_data)
    # Erasure is its own permission (privacy.add_erasure), stronger than fixing subscriptions.
    model_admin.has_erase_permission = lambda request: request.user.has_perm("privacy.add_erasure")
