"""Open alerts as rows of the admin index's "Needs attention" box (webhooks/attention.py). Registered in
SOURCES by OperationsConfig.ready(), so that webhooks never imports operations."""

from django.urls import reverse
from django.utils import timezone

from webhooks.attention import Row

from .models import Alert


def alert_rows() -> list[Row]:
    """One row per open alert, linking to where it is acted on (its own list, else the alerts' list)."""
    alerts_url = reverse("admin:operations_alert_changelist") + "?resolved_at__isnull=True"
    now = timezone.now()
    rows = []
    for alert in Alert.objects.filter(resolved_at__isnull=True).order_by("started_at", "id"):
        hours = (now - alert.started_at).total_seconds() / 3600
        rows.append(Row(f"Alert: {alert.summary}", alert.count or 1, alert.url or alerts_url,
                        f"open for {hours:.1f} h ({alert.key}); {alert.detail}"))
    return rows
