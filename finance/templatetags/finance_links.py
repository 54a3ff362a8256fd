"""The admin index's link to the finance dashboard, for those who may see it (finance/dashboard.py).
A template tag, so that the admin (billing) never imports finance."""

from django import template
from django.urls import reverse

from finance.dashboard import may_view

register = template.Library()


@register.simple_tag
def finance_dashboard_url(user) -> str:
    """The dashboard's URL, or "" for a user without the permission."""
    return reverse("finance-dashboard") if may_view(user) else ""
