"""Xsolla's staff actions for the subscriptions admin (collected by billing/admin/subscriptions.py): cancel
now or at period end, and cancel with a refund of the last payment (needs billing.refund_at_store). Each
asks for a reason on the confirm-action page, goes to Xsolla's subscriptions API, then re-reads and
applies Xsolla's state (services.py)."""

from django import forms

from billing.admin.toolkit import REASON, store_action
from billing.providers.staff_changes import REFUND_PERMISSION
from billing.snapshots import Provider

from . import services


class CancelForm(forms.Form):
    when = forms.ChoiceField(choices=[("period_end", "At period end (no renewal; access until the next charge date)"),
                                      ("now", "Now (access ends at once; nothing is refunded)")],
                             widget=forms.RadioSelect, initial="period_end")
    reason = REASON()


class RefundForm(forms.Form):
    reason = REASON()


def _cancel(subscription, data, staff_user) -> str:
    result = services.subscription_cancel_at_xsolla(subscription=subscription, when=data["when"],
                                                    reason=data["reason"], staff_user=staff_user)
    what = "canceled now" if data["when"] == "now" else "set to cancel at period end"
    return f"{what} at Xsolla, and re-read ({result.old_status} → {result.new_status})"


def _refund(subscription, data, staff_user) -> str:
    result = services.subscription_refund_at_xsolla(subscription=subscription, reason=data["reason"],
                                                    staff_user=staff_user)
    return f"canceled at Xsolla with a refund of the last payment, and re-read ({result.old_status} → " \
           f"{result.new_status})"


xsolla_cancel = store_action(
    "xsolla_cancel", description="Xsolla: cancel (now or at period end)", provider=Provider.XSOLLA, store="Xsolla",
    run=_cancel, form_class=CancelForm, title="Cancel at Xsolla", submit="Cancel at Xsolla",
    intro="Xsolla stops the subscription. At period end: no renewal, access until the next charge date. Now: "
          "access ends at once. Nothing is refunded.")

xsolla_cancel_and_refund = store_action(
    "xsolla_cancel_and_refund", description="Xsolla: cancel now and refund the last payment",
    provider=Provider.XSOLLA, store="Xsolla", run=_refund, permission=REFUND_PERMISSION, form_class=RefundForm,
    title="Cancel and refund at Xsolla", submit="Cancel and refund",
    intro="Xsolla cancels the subscription now and refunds its last payment in full (Xsolla's API refunds only "
          "together with canceling, and only the last payment). Access ends at once.")

ACTIONS = (xsolla_cancel, xsolla_cancel_and_refund)
LIST_FILTERS = ()
