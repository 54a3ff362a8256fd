"""Xsolla's staff actions for the subscriptions admin (collected by billing/admin/subscriptions.py):
cancel now or at period end; postpone the next charge (free days); cancel with a refund of the last
payment; refund the latest payment in full or in part (both refunds need billing.refund_at_store). Each
asks for a reason on the confirm-action page, goes to Xsolla's API, then re-reads and applies Xsolla's
state (services.py)."""

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


class PostponeForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=services.MAX_POSTPONE_DAYS,
                              help_text="The next charge moves this many days later; the user keeps access, free.")
    reason = REASON()


def _postpone(subscription, data, staff_user) -> str:
    result = services.subscription_postpone_at_xsolla(subscription=subscription, days=data["days"],
                                                      reason=data["reason"], staff_user=staff_user)
    return f"next charge postponed by {data['days']} days at Xsolla, and re-read ({result.outcome})"


class PaymentRefundForm(forms.Form):
    amount = forms.DecimalField(required=False, min_value=0, decimal_places=3, max_digits=12,
                                help_text="In the payment's currency, major units (e.g. 4.99). Empty: the whole "
                                          "payment. Partial refunds work only with some payment methods.")
    reason = REASON(help_text="Required. Kept in the subscription's history with your name, and sent to Xsolla "
                              "as the refund's description.")


def _refund_payment(subscription, data, staff_user) -> str:
    _result, message = services.payment_refund_at_xsolla(subscription=subscription, amount=data["amount"],
                                                         reason=data["reason"], staff_user=staff_user)
    return f"refund requested at Xsolla: {message}"


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

xsolla_refund_payment = store_action(
    "xsolla_refund_payment", description="Xsolla: refund the latest payment (full or partial)",
    provider=Provider.XSOLLA, store="Xsolla", run=_refund_payment, permission=REFUND_PERMISSION,
    form_class=PaymentRefundForm, title="Refund at Xsolla", submit="Request the refund",
    intro="Xsolla refunds the latest payment to the user, in full or in part; the subscription goes on (cancel it "
          "too if it should not renew). Xsolla may complete the refund at once or by hand within two business "
          "days; its refund webhook then records it here, and a full refund ends access.")

xsolla_postpone = store_action(
    "xsolla_postpone", description="Xsolla: postpone the next charge (free days)", provider=Provider.XSOLLA,
    store="Xsolla", run=_postpone, form_class=PostponeForm, title="Postpone the next charge at Xsolla",
    submit="Postpone", intro="Xsolla moves the next charge later: the user keeps access and is charged later.")

ACTIONS = (xsolla_cancel, xsolla_postpone, xsolla_cancel_and_refund, xsolla_refund_payment)
LIST_FILTERS = ()
