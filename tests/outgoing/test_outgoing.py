"""Outgoing webhooks: status changes from the outbox reach registered endpoints (local HTTP servers
started here), signed as docs/events.md says, retried with backoff until they succeed or die, each
attempt in the admin, resendable; a dead endpoint holds up nobody else."""

import json
import re
import threading
import time
from datetime import timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import time_machine
from celery import current_app
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.models import Outbox
from billing.redis_client import get_redis
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status
from outgoing.models import Delivery, Endpoint
from outgoing.tasks import dispatch_deliveries, send_delivery
from tests.factories import T0, ProductFactory, snapshot

WEBHOOK = Cause(CauseKind.WEBHOOK, ref="evt")
snap = partial(snapshot, user_id="1001", store_product_id="price_m", expires_at=T0 + timedelta(days=30))


def documented_verify():
    """The verification snippet of docs/events.md ("Outgoing webhooks"), as a consumer copies it."""
    text = (Path(django_settings.BASE_DIR) / "docs" / "events.md").read_text()
    section = text[text.index("## Outgoing webhooks"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(code, namespace)  # the documentation's own code, as a consumer runs it
    return namespace["verify_billing_signature"]


class Receiver:
    """A local endpoint answering the given status codes in turn (the last one from then on)."""

    def __init__(self, *codes: int, hang: bool = False):
        self.codes, self.hang, self.received = list(codes) or [200], hang, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                if receiver.hang:
                    time.sleep(2)
                    return
                code = receiver.codes.pop(0) if len(receiver.codes) > 1 else receiver.codes[0]
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"thanks" if code < 300 else b"boom: internal error")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers(settings):
    settings.OUTGOING_WEBHOOK_ALLOW_HTTP = True
    made = []

    def make(*codes, **kw):
        made.append(Receiver(*codes, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def endpoint_for(receiver: Receiver, **fields) -> Endpoint:
    return Endpoint.objects.create(url=receiver.url, **fields)


@pytest.mark.django_db
def test_a_failing_endpoint_gets_the_event_once_after_retries_the_other_at_once(receivers):
    ProductFactory(store_product_id="price_m")
    flaky, steady = receivers(500, 500, 500, 200), receivers(200)
    flaky_endpoint, steady_endpoint = endpoint_for(flaky), endpoint_for(steady)
    apply_snapshot(snap(Status.ACTIVE), WEBHOOK)
    (outbox_row,) = Outbox.objects.all()
    verify = documented_verify()

    dispatch_deliveries()
    assert steady.bodies() == [outbox_row.payload]  # at once, the stream event's fields exactly
    headers, body = steady.received[0]
    assert verify(steady_endpoint.secret, headers["X-Billing-Signature"], body)
    assert not verify(flaky_endpoint.secret, headers["X-Billing-Signature"], body)
    assert not verify(steady_endpoint.secret, headers["X-Billing-Signature"], body.replace(b"ACTIVE", b"EXPIRED"))
    assert len(flaky.received) == 1
    delivery = Delivery.objects.get(endpoint=flaky_endpoint)
    assert delivery.status == Delivery.Status.PENDING and delivery.next_attempt_at > timezone.now()

    dispatch_deliveries()  # not due yet: nothing is sent again
    assert len(flaky.received) == 1

    tries = 1
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        for _ in range(5):
            traveller.shift(timedelta(hours=1))
            dispatch_deliveries()
            if len(flaky.received) > tries:
                tries, (headers, body) = len(flaky.received), flaky.received[-1]
                assert verify(flaky_endpoint.secret, headers["X-Billing-Signature"], body)  # signed anew each time
    assert len(flaky.received) == 4  # three 500s, then accepted, then never again
    assert flaky.bodies()[-1] == outbox_row.payload
    assert len(steady.received) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.DELIVERED, 4)
    assert [(a.status_code, a.ok) for a in delivery.attempt_log.all()] == [(500, False)] * 3 + [(200, True)]


def test_backoff_grows_and_is_capped(settings):
    from outgoing.sending import backoff_seconds

    settings.OUTGOING_WEBHOOK_RETRY_BASE_SECONDS, settings.OUTGOING_WEBHOOK_RETRY_MAX_SECONDS = 60, 3600
    assert 30 <= backoff_seconds(1) <= 60
    assert 240 <= backoff_seconds(4) <= 480
    assert 1800 <= backoff_seconds(20) <= 3600


def celery_messages() -> list[dict]:
    """The tasks waiting on the broker (Redis: a list per queue), as a worker would take them."""
    out = []
    queues = [q.name for q in current_app.conf.task_queues or ()] or ["celery"]
    for raw in [raw for queue in queues for raw in get_redis().lrange(queue, 0, -1)]:
        message = json.loads(raw)
        out.append({"task": message["headers"]["task"], "args": json.loads(
            __import__("base64").b64decode(message["body"]))[0]})
    return out


@pytest.mark.django_db
def test_a_dead_endpoint_delays_neither_the_dispatch_nor_the_other_endpoint(receivers, settings, monkeypatch,
                                                                           admin_client):
    settings.OUTGOING_WEBHOOK_READ_TIMEOUT_SECONDS = 0.5
    ProductFactory(store_product_id="price_m")
    hanging, steady = receivers(hang=True), receivers(200)
    hanging_endpoint, steady_endpoint = endpoint_for(hanging), endpoint_for(steady)
    apply_snapshot(snap(Status.ACTIVE), WEBHOOK)

    monkeypatch.setitem(current_app.conf, "task_always_eager", False)  # as with a broker and workers
    started = time.monotonic()
    assert dispatch_deliveries() == 2
    assert time.monotonic() - started < 0.4  # nothing sent by the dispatch itself
    tasks = {tuple(m["args"]) for m in celery_messages() if m["task"] == "outgoing.tasks.send_delivery"}
    by_endpoint = {d.endpoint_id: (d.pk, 0) for d in Delivery.objects.all()}
    assert tasks == set(by_endpoint.values())  # one task per delivery

    started = time.monotonic()
    send_delivery(*by_endpoint[steady_endpoint.pk])  # a worker takes the steady endpoint's task
    assert time.monotonic() - started < 0.4
    assert len(steady.received) == 1
    send_delivery(*by_endpoint[hanging_endpoint.pk])
    attempt = Delivery.objects.get(endpoint=hanging_endpoint).attempt_log.get()
    assert "Timeout" in attempt.error and attempt.status_code is None

    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    settings.OUTGOING_WEBHOOK_READ_TIMEOUT_SECONDS = 0.05
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        for i, hours in enumerate(range(1, 80, 6)):
            traveller.shift(timedelta(hours=6))
            apply_snapshot(snap(Status.ACTIVE if i % 2 else Status.CANCELED, 60 * hours), WEBHOOK)
            dispatch_deliveries()
    assert len(steady.received) == 1 + 14  # every later change at once
    first = Delivery.objects.filter(endpoint=hanging_endpoint).order_by("id").first()
    assert first.status == Delivery.Status.DEAD and first.attempts >= 5 and first.next_attempt_at is None
    # Staff see it without looking for it: the admin index's "Needs attention" box counts and links them.
    dead = Delivery.objects.filter(status=Delivery.Status.DEAD).count()
    box = admin_client.get("/admin/").content.decode().split('id="needs-attention"')[1].split("</table>")[0]
    assert "Dead outgoing webhook deliveries" in box and f"<strong>{dead}</strong>" in box
    assert "/admin/outgoing/delivery/?status__exact=dead" in box


@pytest.mark.django_db
def test_the_admin_shows_attempts_and_a_resend_sends_again(receivers, admin_client):
    ProductFactory(store_product_id="price_m")
    receiver = receivers(500, 200)
    endpoint_for(receiver)
    apply_snapshot(snap(Status.ACTIVE), WEBHOOK)
    dispatch_deliveries()
    delivery = Delivery.objects.get()

    page = admin_client.get(reverse("admin:outgoing_delivery_change", args=[delivery.pk])).content.decode()
    assert "boom: internal error" in page and "500" in page and "HTTP 500" in page

    response = admin_client.post(reverse("admin:outgoing_delivery_changelist"),
                                 {"action": "resend", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    assert len(receiver.received) == 2
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    admin_client.post(reverse("admin:outgoing_delivery_changelist"),
                      {"action": "resend", "_selected_action": [delivery.pk]})
    assert len(receiver.received) == 3  # a delivered event is sent again on request
    page = admin_client.get(reverse("admin:outgoing_delivery_change", args=[delivery.pk])).content.decode()
    assert page.count("thanks") == 2


@pytest.mark.django_db
def test_a_filtered_endpoint_gets_only_its_kinds(receivers):
    ProductFactory(store_product_id="price_m")
    everything, cancellations, apple_only = receivers(200), receivers(200), receivers(200)
    endpoint_for(everything)
    endpoint_for(cancellations, new_statuses=["CANCELED", "EXPIRED"])
    endpoint_for(apple_only, providers=["apple"])
    apply_snapshot(snap(Status.ACTIVE), WEBHOOK)
    apply_snapshot(snap(Status.CANCELED, 1), WEBHOOK)
    dispatch_deliveries()
    assert [b["newStatus"] for b in everything.bodies()] == ["ACTIVE", "CANCELED"]
    assert [b["newStatus"] for b in cancellations.bodies()] == ["CANCELED"]
    assert apple_only.received == []


@pytest.mark.django_db
def test_an_endpoint_is_not_sent_the_past_nor_anything_while_inactive(receivers):
    ProductFactory(store_product_id="price_m")
    apply_snapshot(snap(Status.ACTIVE), WEBHOOK)
    receiver = receivers(200)
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        endpoint = endpoint_for(receiver, active=False)
        apply_snapshot(snap(Status.CANCELED, 1), WEBHOOK)
        dispatch_deliveries()
        assert receiver.received == []
        endpoint.active = True
        endpoint.save()
        apply_snapshot(snap(Status.EXPIRED, 2), WEBHOOK)
        dispatch_deliveries()
    assert [b["newStatus"] for b in receiver.bodies()] == ["EXPIRED"]


@pytest.mark.django_db
def test_the_secret_is_shown_to_superusers_only_and_http_needs_the_setting(admin_client, client, settings):
    from tests.factories import UserFactory

    settings.OUTGOING_WEBHOOK_ALLOW_HTTP = False
    add = reverse("admin:outgoing_endpoint_add")
    answer = admin_client.post(add, {"url": "http://consumer.example/hook", "active": "on"})
    assert answer.status_code == 200 and "Use an https:// URL" in answer.content.decode()
    answer = admin_client.post(add, {"url": "https://consumer.example/hook", "active": "on",
                                     "new_statuses": ["EXPIRED"]})
    assert answer.status_code == 302
    endpoint = Endpoint.objects.get()
    assert endpoint.new_statuses == ["EXPIRED"] and endpoint.secret.startswith("whsec_")
    change = reverse("admin:outgoing_endpoint_change", args=[endpoint.pk])
    assert endpoint.secret in admin_client.get(change).content.decode()

    staff = UserFactory(is_staff=True, is_superuser=False)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_endpoint", "change_endpoint"]))
    client.force_login(staff)
    page = client.get(change).content.decode()
    assert answer.status_code == 302 and endpoint.secret not in page and endpoint.secret[:10] in page




@pytest.mark.django_db
def test_in_process_mode_sends_after_a_request(receivers, settings, client):
    """`make run` has no beat: with OUTGOING_WEBHOOK_SEND_AFTER_REQUEST the web process sends."""
    from outgoing import inline

    ProductFactory(store_product_id="price_m")
    receiver = receivers(200)
    endpoint_for(receiver)
    apply_snapshot(snap(Status.ACTIVE), WEBHOOK)
    settings.OUTGOING_WEBHOOK_SEND_AFTER_REQUEST = False
    client.get("/health")
    assert receiver.received == []
    settings.OUTGOING_WEBHOOK_SEND_AFTER_REQUEST = True
    inline._last[0] = 0.0
    client.get("/health")
    assert [b["newStatus"] for b in receiver.bodies()] == ["ACTIVE"]
