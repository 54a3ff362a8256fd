"""Dead deliveries as a row of the admin index's "Needs attention" box (webhooks/attention.py).
Registered in SOURCES by OutgoingConfig.ready(), so that webhooks never imports outgoing."""

from django.urls import reverse

from webhooks.attention import Row

from .models import Delivery


def delivery_rows() -> list[Row]:
    """Deliveries that gave up (their endpoint failed past the retry horizon): one count, over a
    partial index."""
    dead = Delivery.objects.filter(status=Delivery.Status.DEAD).count()
    url = reverse("admin:outgoing_delivery_changelist") + f"?status__exact={Delivery.Status.DEAD}"
    return [Row("Dead outgoing webhook deliveries", dead, url,
                "an endpoint failed past the retry horizon: fix it, then resend them")]
