from django import template

from webhooks.attention import needs_attention as attention_rows
from webhooks.selectors import event_counts_last_day

register = template.Library()


@register.simple_tag
def webhook_counts_last_day():
    """Per provider over the last day: received, waiting, processed, ignored, failed, dead, rejected."""
    return event_counts_last_day()


@register.inclusion_tag("admin/needs_attention.html")
def needs_attention():
    """The "Needs attention" box (webhooks.attention)."""
    return {"rows": attention_rows()}
