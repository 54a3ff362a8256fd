from django import template

from webhooks.selectors import event_counts_last_day

register = template.Library()


@register.simple_tag
def webhook_counts_last_day():
    """Per provider over the last day: received, waiting, processed, ignored, failed, dead, rejected."""
    return event_counts_last_day()
