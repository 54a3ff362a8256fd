"""Stripe's staff actions for the subscriptions admin (collected by billing/admin/subscriptions.py):
cancel now or at period end, and refund the latest paid invoice in full or in part. Each asks for a
reason on the confirm-action page, goes to Stripe first, then re-reads Stripe's state and applies it
(services.py); refunds need the separate billing.refund_at_store permission."""

from django import forms

from billing import money
from billing.admin.toolkit import REASON, store_action
from billing.providers.staff_changes import REFUND_PERMISSION
from billing.snapshots import Provider

from . import services


class CancelForm(forms.Form):
    when = forms.ChoiceField(choices=[("period_end", "At period end (no renewal; access until the paid period ends)"),
                                      ("now", "Now (access ends at once; nothing is refunded)")],
                             widget=forms.RadioSelect, initial="period_end")
    reason = REASON()


class RefundForm(forms.Form):
    amount = forms.DecimalField(required=False, min_value=0, decimal_places=3, max_digits=12,
                                help_text="In the invoice's currency, major units (e.g. 4.99). Empty: everything "
                                          "still refundable. Checked against what was paid and refunded already.")
    reason = REASON()

    def clean_amount(self):
        amount = self.cleaned_data.get("amount")
        if amount is not None and amount <= 0:
            raise forms.ValidationError("More than zero, or empty for a full refund.")
        return amount


def _refundable(subscription) -> str:
    target = services.latest_paid_invoice(subscription=subscription)
    return (f"Latest paid invoice {target.invoice_id}: {money.format_minor(target.paid_minor, target.currency)} paid, "
            f"{money.format_minor(target.refunded_minor, target.currency)} refunded already, "
            f"{money.format_minor(target.refundable_minor, target.currency)} can be refunded.")


def _cancel(subscription, data, staff_user) -> str:
    result = services.subscription_cancel_at_stripe(subscription=subscription, when=data["when"],
                                                    reason=data["reason"], staff_user=staff_user)
    what = "canceled now" if data["when"] == "now" else "set to cancel at period end"
    return f"{what} at Stripe, and re-read ({result.old_status} → {result.new_status})"


def _refund(subscription, data, staff_user) -> str:
    result = services.invoice_refund_at_stripe(subscription=subscription, amount=data["amount"],
                                               reason=data["reason"], staff_user=staff_user)
    return f"refunded at Stripe, and re-read ({result.old_status} → {result.new_status})"


stripe_cancel = store_action(
    "stripe_cancel", description="Stripe: cancel (now or at period end)", provider=Provider.STRIPE, store="Stripe",
    run=_cancel, form_class=CancelForm, title="Cancel at Stripe", submit="Cancel at Stripe",
    intro="Stripe stops the subscription. At period end: no renewal, access until the paid period ends. Now: "
          "access ends at once. Nothing is refunded (refund separately).")

stripe_refund = store_action(
    "stripe_refund", description="Stripe: refund the latest paid invoice", provider=Provider.STRIPE, store="Stripe",
    run=_refund, permission=REFUND_PERMISSION, describe=_refundable, form_class=RefundForm, title="Refund at Stripe",
    submit="Refund",
    intro="Stripe refunds the latest paid invoice's charge to the payer's card, in full or in part. A full refund "
          "of the current period's invoice also ends access (REVOKED); a partial refund leaves access as it is. "
          "The subscription is not canceled: cancel it too if it should not renew.")

ACTIONS = (stripe_cancel, stripe_refund)
LIST_FILTERS = ()
