"""`{% timeline obj %}`: the support timeline of a subscriber or a subscription, rendered below its admin
change page (templates/support/*_change_form.html). Its filters and page are GET parameters prefixed
`tl_` so they never meet the admin's own."""

from datetime import UTC
from urllib.parse import urlencode

from django import template
from django.urls import reverse
from django.utils import timezone

from accounts.models import Subscriber
from billing.explanations import explain_subscription, relative
from billing.snapshots import Provider
from support.timeline import KIND_LABELS, KINDS, PAGE_SIZE, subscriber_scope, subscription_scope, timeline_page

register = template.Library()


@register.inclusion_tag("support/timeline.html", takes_context=True)
def timeline(context, obj):
    request = context["request"]
    now = timezone.now()
    is_subscriber = isinstance(obj, Subscriber)
    scope = subscriber_scope(obj) if is_subscriber else subscription_scope(obj)
    chosen = [k for k in request.GET.getlist("tl_kind") if k in KINDS] or list(KINDS)
    providers = sorted({s.provider for s in scope.subscriptions.values()})
    provider = request.GET.get("tl_provider", "")
    provider = provider if provider in providers else ""
    cursor = request.GET.get("tl_before", "")
    page = timeline_page(scope, kinds=chosen, provider=provider, cursor=cursor, limit=PAGE_SIZE)
    filters = [("tl_kind", k) for k in chosen if len(chosen) < len(KINDS)]
    filters += [("tl_provider", provider)] if provider else []
    rows = [{"entry": e, "absolute": f"{e.at.astimezone(UTC):%-d %b %Y %H:%M:%S} UTC", "relative": relative(e.at, now),
             "iso": e.at.isoformat()} for e in page.entries]
    explanations = []
    if is_subscriber:
        explanations = [(s, explain_subscription(s, now=now)) for s in
                        sorted(scope.subscriptions.values(), key=lambda s: s.created_at, reverse=True)[:10]]
    user = request.user
    return {
        "rows": rows, "is_subscriber": is_subscriber, "obj": obj, "explanations": explanations,
        "kinds": [(k, KIND_LABELS[k], k in chosen) for k in KINDS],
        "providers": [(p, dict(Provider.CHOICES).get(p, p)) for p in providers], "provider": provider,
        "older_url": "?" + urlencode([*filters, ("tl_before", page.next_cursor)]) + "#timeline"
        if page.next_cursor else "",
        "newest_url": ("?" + urlencode(filters) + "#timeline") if cursor else "",
        "filtered": bool(filters),
        "note_url": reverse("support-note-add", args=[obj.pk]) if is_subscriber else "",
        "may_note": is_subscriber and user.has_perm("audit.add_note"),
        "csrf_token": context.get("csrf_token"),
    }
