"""Alerts as an operator gets them: each condition announced once (ADMINS e-mail and the alert webhook,
a local HTTP server here), not again within ALERT_REMINDER_HOURS, reminded after it, resolved when it
clears; beat jobs that stopped succeeding; a failing channel; the admin's Needs attention box."""

import json
import re
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from celery import shared_task
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from billing.models import Outbox
from billing.tasks import expire_lapsed
from operations import job_runs
from operations.models import Alert, JobRun
from operations.tasks import check_alerts
from tests.factories import SubscriptionFactory
from tests.helpers import closed_port
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

EXPIRE_LAPSED = {"billing-expire-lapsed": {"task": "billing.tasks.expire_lapsed", "schedule": 60.0}}


class AlertReceiver:
    """A Slack-style incoming webhook: records each JSON body it is POSTed, answers `status`."""

    def __init__(self):
        self.posts: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                assert self.headers["Content-Type"] == "application/json"
                receiver.posts.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/SECRETTOKEN"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [post["text"] for post in self.posts]


@pytest.fixture
def receiver(settings):
    server = AlertReceiver()
    settings.ALERT_WEBHOOK_URL = server.url
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(autouse=True)
def _alert_settings(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.ALERT_REMINDER_HOURS = 24
    settings.ALERT_SEND_RESOLVED = True
    # each test turns on the one condition it is about
    settings.CELERY_BEAT_SCHEDULE = {}
    settings.ALERT_WEBHOOK_SILENCE_HOURS = 0


def _dead_events():
    for n in (1, 2):
        WebhookEvent.objects.create(provider="stripe", dedupe_key=f"evt_dead_{n}", status=WebhookEvent.Status.DEAD,
                                    body=b"{}", processed_at=timezone.now())
    return lambda: WebhookEvent.objects.update(status=WebhookEvent.Status.PROCESSED)  # replayed


def _google_due():
    sub = SubscriptionFactory(provider="google", provider_subscription_id="tok_due",
                              acknowledgement_due_at=timezone.now() + timedelta(hours=6))
    SubscriptionFactory(provider="google", provider_subscription_id="tok_later",  # not yet: 3 days left
                        acknowledgement_due_at=timezone.now() + timedelta(hours=72))
    return lambda: type(sub).objects.filter(pk=sub.pk).update(acknowledged_at=timezone.now())


def _outbox_backlog(clock):
    Outbox.objects.create(payload={"newStatus": "ACTIVE"})
    clock.shift(timedelta(minutes=3))
    assert not check_alerts.delay().get()["opened"]  # 3 minutes: the relay may still catch up
    clock.shift(timedelta(minutes=3))
    return lambda: Outbox.objects.update(published_at=timezone.now())


def _silent_store(settings):
    settings.ALERT_WEBHOOK_SILENCE_HOURS = 24
    SubscriptionFactory(provider="apple", provider_subscription_id="1000000001")
    return lambda: WebhookEvent.objects.create(provider="apple", dedupe_key="n1", body=b"{}")


CONDITIONS = {
    "dead": ("webhooks.dead:stripe", "2 dead stripe webhook event(s)", lambda clock, settings: _dead_events()),
    "google": ("google.acknowledgement_due", "1 Google purchase(s) unacknowledged",
               lambda clock, settings: _google_due()),
    "outbox": ("outbox.backlog", "1 status change(s) not published to the stream, the oldest for 6 min",
               lambda clock, settings: _outbox_backlog(clock)),
    "silent": ("webhooks.silent:apple", "No apple webhooks (none ever received) while 1 apple subscription(s) are live",
               lambda clock, settings: _silent_store(settings)),
}


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_a_condition_is_sent_once_reminded_daily_and_resolved(name, settings, mailoutbox, receiver):
    key, summary, make = CONDITIONS[name]
    with time_machine.travel(timezone.now(), tick=False) as clock:
        clear = make(clock, settings)
        assert check_alerts.delay().get()["opened"] == [key]

        (mail,) = mailoutbox
        assert mail.to == ["ops@example.com"] and "ALERT" in mail.subject and summary in mail.subject
        assert f"Key: {key}" in mail.body and "/admin/" in mail.body
        (text,) = receiver.texts()
        assert "ALERT" in text and summary in text

        clock.shift(timedelta(minutes=5))
        check_alerts.delay()
        clock.shift(timedelta(hours=23))  # still within the reminder period
        check_alerts.delay()
        assert len(mailoutbox) == 1 and len(receiver.posts) == 1

        clock.shift(timedelta(hours=1))  # 24 h after the announcement
        assert check_alerts.delay().get()["reminded"] == [key]
        assert len(mailoutbox) == 2 and "STILL FIRING" in mailoutbox[1].subject
        assert "STILL FIRING" in receiver.texts()[1]
        check_alerts.delay()
        assert len(mailoutbox) == 2  # the next reminder is a day later again

        clear()
        assert check_alerts.delay().get()["resolved"] == [key]
        assert "RESOLVED" in mailoutbox[2].subject and "RESOLVED" in receiver.texts()[2]
        clock.shift(timedelta(hours=12))
        check_alerts.delay()
        assert len(mailoutbox) == 3 and len(receiver.posts) == 3  # a cleared condition stops

    alert = Alert.objects.get(key=key)
    assert alert.resolved_at is not None and alert.sent_count == 2


def test_nothing_wrong_sends_nothing(settings, mailoutbox, receiver):
    settings.ALERT_WEBHOOK_SILENCE_HOURS = 24
    SubscriptionFactory(provider="google", acknowledgement_due_at=timezone.now() + timedelta(hours=13))
    WebhookEvent.objects.create(provider="google", dedupe_key="m1", body=b"{}")
    Outbox.objects.create(payload={}, published_at=timezone.now())
    assert check_alerts.delay().get() == {"opened": [], "reminded": [], "resolved": [], "open": 0}
    assert not mailoutbox and not receiver.posts


def test_a_condition_that_comes_back_is_announced_again(mailoutbox):
    clear = _dead_events()
    check_alerts.delay()
    clear()
    check_alerts.delay()
    WebhookEvent.objects.update(status=WebhookEvent.Status.DEAD)
    assert check_alerts.delay().get()["opened"] == ["webhooks.dead:stripe"]
    assert [m.subject.split(":")[0] for m in mailoutbox] == [
        "[billing-service] ALERT", "[billing-service] RESOLVED", "[billing-service] ALERT"]  # EMAIL_SUBJECT_PREFIX
    assert Alert.objects.filter(key="webhooks.dead:stripe").count() == 2  # each occurrence kept


# --- beat jobs ------------------------------------------------------------------------------------

@shared_task(name="tests.operations.failing_job")
def failing_job():
    raise RuntimeError("the store said no")


def test_beat_job_runs_are_recorded_from_the_task_signals(settings):
    settings.CELERY_BEAT_SCHEDULE = {**EXPIRE_LAPSED, "failing": {"task": "tests.operations.failing_job",
                                                                  "schedule": 60.0}}
    expire_lapsed.delay()
    failing_job.delay()
    check_alerts.delay()  # not in this schedule: not recorded

    assert set(job_runs.last_successes()) == {"billing.tasks.expire_lapsed"}
    ok, failed = JobRun.objects.order_by("task")
    assert ok.last_started_at and ok.last_succeeded_at and ok.last_failed_at is None
    assert failed.task == "tests.operations.failing_job" and failed.last_succeeded_at is None
    assert failed.last_started_at and failed.last_failed_at and failed.last_error == "RuntimeError: the store said no"


def test_a_beat_job_not_succeeding_in_twice_its_interval_alerts(settings, mailoutbox):
    settings.CELERY_BEAT_SCHEDULE = EXPIRE_LAPSED
    with time_machine.travel(timezone.now(), tick=False) as clock:
        expire_lapsed.delay()
        clock.shift(timedelta(seconds=110))
        assert not check_alerts.delay().get()["opened"]  # late, but within twice its 60 s

        clock.shift(timedelta(seconds=20))
        assert check_alerts.delay().get()["opened"] == ["beat.overdue:billing-expire-lapsed"]
        (mail,) = mailoutbox
        assert "billing-expire-lapsed (billing.tasks.expire_lapsed) last succeeded 2 min ago" in mail.subject

        expire_lapsed.delay()  # beat is back
        assert check_alerts.delay().get()["resolved"] == ["beat.overdue:billing-expire-lapsed"]


def test_a_failing_beat_job_alerts_with_its_error_and_a_new_job_gets_its_first_intervals(settings, mailoutbox):
    settings.CELERY_BEAT_SCHEDULE = {"failing": {"task": "tests.operations.failing_job", "schedule": 600.0}}
    with time_machine.travel(timezone.now(), tick=False) as clock:
        assert not check_alerts.delay().get()["opened"]  # never seen before: its clock starts now
        failing_job.delay()
        clock.shift(timedelta(minutes=21))
        failing_job.delay()
        assert check_alerts.delay().get()["opened"] == ["beat.overdue:failing"]
    (mail,) = mailoutbox
    assert "never succeeded" in mail.subject and "last error: RuntimeError: the store said no" in mail.body


def test_the_interval_staff_set_in_the_admin_wins_and_a_paused_job_is_not_expected(settings, mailoutbox):
    settings.CELERY_BEAT_SCHEDULE = EXPIRE_LAPSED
    every_hour = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    job = PeriodicTask.objects.create(name="billing-expire-lapsed", task="billing.tasks.expire_lapsed",
                                      interval=every_hour)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        expire_lapsed.delay()
        clock.shift(timedelta(minutes=90))
        assert not check_alerts.delay().get()["opened"]  # staff made it hourly: 90 min is fine
        clock.shift(timedelta(minutes=31))
        assert check_alerts.delay().get()["opened"] == ["beat.overdue:billing-expire-lapsed"]

        job.enabled = False  # paused by staff: no longer expected to run
        job.save()
        assert check_alerts.delay().get()["resolved"] == ["beat.overdue:billing-expire-lapsed"]


# --- channels -------------------------------------------------------------------------------------

def test_a_failing_channel_never_breaks_the_job_and_leaks_no_url(settings, mailoutbox, caplog):
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{closed_port()}/services/T0/B0/SECRETTOKEN"
    _dead_events()
    assert check_alerts.delay().get()["opened"] == ["webhooks.dead:stripe"]  # the mail went
    assert len(mailoutbox) == 1
    alert = Alert.objects.get()
    assert alert.sent_count == 1 and alert.last_send_error == "webhook: ConnectionError"
    assert any("alert channel webhook failed" in r.getMessage() for r in caplog.records)
    assert "SECRETTOKEN" not in caplog.text and "SECRETTOKEN" not in alert.last_send_error


def test_a_message_no_channel_took_is_sent_at_the_next_run(settings, mailoutbox, receiver):
    settings.ADMINS = []
    receiver.status = 500
    _dead_events()
    assert check_alerts.delay().get()["opened"] == []  # not delivered...
    alert = Alert.objects.get()
    assert alert.last_sent_at is None and alert.last_send_error == "webhook: RuntimeError: answered HTTP 500"

    receiver.status = 200
    assert check_alerts.delay().get()["opened"] == ["webhooks.dead:stripe"]  # ...so tried again
    assert [t.split(":")[0] for t in receiver.texts()] == ["*[billing-service] ALERT"] * 2
    check_alerts.delay()
    assert len(receiver.posts) == 2


# --- the admin ------------------------------------------------------------------------------------

def _needs_attention(admin_client) -> str:
    page = admin_client.get("/admin/").content.decode()
    box = page[page.index('id="needs-attention"'):]
    return box[:box.index("</div>")]


def test_open_alerts_are_in_the_needs_attention_box(settings, admin_client):
    settings.ALERT_WEBHOOK_SILENCE_HOURS = 24
    SubscriptionFactory(provider="apple")
    assert "Nothing needs attention." in _needs_attention(admin_client)
    check_alerts.delay()

    box = _needs_attention(admin_client)
    assert "Alert: No apple webhooks (none ever received)" in box and "webhooks.silent:apple" in box
    (url,) = set(re.findall(r'href="([^"]*provider__exact=apple[^"]*)"', box))
    assert admin_client.get(url.replace("&amp;", "&")).status_code == 200

    alerts = admin_client.get("/admin/operations/alert/?resolved_at__isnull=True").content.decode()
    assert "webhooks.silent:apple" in alerts

    WebhookEvent.objects.create(provider="apple", dedupe_key="n1", body=b"{}")
    check_alerts.delay()
    assert "Nothing needs attention." in _needs_attention(admin_client)
    resolved = admin_client.get("/admin/operations/alert/?resolved_at__isnull=False").content.decode()
    assert "webhooks.silent:apple" in resolved
