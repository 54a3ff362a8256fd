"""Open double payments as a row of the admin index's "Needs attention" box (webhooks/attention.py).
Registered in SOURCES by WebhooksConfig.ready(): billing never imports webhooks."""

from django.urls import reverse

from billing.models import DoublePayment

from .attention import Row


def double_payment_rows() -> list[Row]:
    """One count over a partial index (open rows only)."""
    count = DoublePayment.objects.filter(status=DoublePayment.Status.OPEN).count()
    url = reverse("admin:billing_doublepayment_changelist") + f"?status__exact={DoublePayment.Status.OPEN}"
    return [Row("Customers paying twice", count, url,
                "two live paid subscriptions for one entitlement: refund or cancel one at its store, then resolve")]
