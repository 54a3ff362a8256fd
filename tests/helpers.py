"""Helpers every test suite shares: deliver a webhook through the real pipeline, read the event
stream, find a port nothing listens on."""

import csv
import io
import json
import socket
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from billing.models import Subscription
from billing.redis_client import get_redis
from webhooks.models import WebhookEvent
from webhooks.processing import events_drain


@dataclass
class Delivered:
    """One webhook delivery: the answer the store got, and the stored event after processing."""

    response: HttpResponse
    event: WebhookEvent | None  # None: refused before it was stored (or a repeat of a stored one)

    @property
    def subscriptions(self) -> list[Subscription]:
        """What the event touched (the event's links, as the admin shows them)."""
        return list(self.event.subscriptions.order_by("id")) if self.event else []

    @property
    def subscription(self) -> Subscription:
        (subscription,) = self.subscriptions
        return subscription


def deliver(provider: str, body: bytes, headers: dict | None = None, *, query: dict | None = None,
            process: bool = True) -> Delivered:
    """POST the body to /webhooks/<provider> as the store does (its own headers: signature, bearer
    token), then process what was stored through the batched drain, as a worker does (follow-ups such
    as Google's acknowledgement included). `process=False`: only store it (deliver several, then
    `drain()`, to process them in one batch)."""
    headers = dict(headers or {})
    content_type = headers.pop("Content-Type", None) or headers.pop("content-type", None) or "application/json"
    url = f"/webhooks/{provider}" + (f"?{urlencode(query)}" if query else "")
    before = set(WebhookEvent.objects.filter(provider=provider).values_list("pk", flat=True))
    response = Client().post(url, data=body, content_type=content_type, headers=headers)
    if process:
        drain()
    event = WebhookEvent.objects.filter(provider=provider).exclude(pk__in=before).order_by("-pk").first()
    return Delivered(response, event)


def drain() -> int:
    """Process every stored event that is due, in drain groups, as the worker's drain task does."""
    done, _more = events_drain()
    return done


def stream_events() -> list[dict]:
    """The events published on the Redis stream, oldest first, as consumers decode them."""
    entries = get_redis().xrange(settings.BILLING_EVENTS_STREAM)
    return [json.loads(fields["event"]) for _, fields in entries]


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exported_transactions(provider: str) -> list[dict]:
    """`manage.py export_transactions` of one store's whole ledger (both environments), as dicts by column:
    what finance would get for these rows."""
    today = timezone.now().date()
    out = io.StringIO()
    call_command("export_transactions", "--from", "2000-01-01", "--to", today.isoformat(), "--provider", provider,
                 "--environment", "all", stdout=out, stderr=io.StringIO())
    return list(csv.DictReader(io.StringIO(out.getvalue())))
