"""Asking the App Store again, against the fake App Store Server API: a subscription's current state
(`fetch`, the beat re-poll), and the notifications Apple failed to deliver (manage.py apple_recover and
its beat job: they come back through the webhook's own path, once)."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.models import Subscription
from billing.providers.base import PermanentError
from billing.statuses import Status
from billing.tasks import repoll_subscriptions
from tests.factories import SubscriptionFactory
from tests.fakes.apple import AppleChain, notification_claims, now_ms, renewal_claims, transaction_claims
from tests.helpers import deliver
from webhooks.models import WebhookEvent
from webhooks.tasks import recover_apple_notifications

pytestmark = pytest.mark.django_db

OTID = "2000000000000100"


# --- A subscription's state ------------------------------------------------------------------------

def test_fetch_re_reads_the_state_from_the_api(apple_settings, apple_chain, adapter, fake_appstore):
    sub = SubscriptionFactory(provider="apple", provider_subscription_id=OTID, environment="sandbox")
    txn = transaction_claims(original_transaction_id=OTID, expires_ms=now_ms() - 1000)
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn, autoRenewStatus=0), status=2)
    snapshot = adapter.fetch(sub)
    assert (snapshot.provider_subscription_id, snapshot.status, snapshot.auto_renew) == (OTID, Status.EXPIRED, False)
    assert snapshot.environment == "sandbox"


def test_fetch_of_a_subscription_the_store_does_not_know_is_permanent(apple_settings, adapter):
    sub = SubscriptionFactory(provider="apple", provider_subscription_id="2000000000000999", environment="sandbox")
    with pytest.raises(PermanentError):
        adapter.fetch(sub)


def test_the_beat_re_poll_applies_what_the_app_store_says(apple_settings, apple_chain, fake_appstore):
    lapsed = SubscriptionFactory(provider="apple", provider_subscription_id=OTID, environment="sandbox")
    SubscriptionFactory(provider="apple", provider_subscription_id="2000000000000999", environment="sandbox")
    txn = transaction_claims(original_transaction_id=OTID, expires_ms=now_ms() - 1000)
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn, autoRenewStatus=0), status=2)

    report = repoll_subscriptions()

    assert report["failed"] == 1  # the one the App Store does not know (SubscriptionNotFound, logged)
    lapsed.refresh_from_db()
    assert (lapsed.status, lapsed.auto_renew) == (Status.EXPIRED, False)
    assert lapsed.last_verified_at is not None
    asked = sorted(r["path"].rsplit("/", 1)[1] for r in fake_appstore.requests)
    assert asked == ["2000000000000100", "2000000000000999"]


# --- Notifications Apple failed to deliver -----------------------------------------------------------


def _notification(chain, otid: str, kind="SUBSCRIBED", subtype="INITIAL_BUY", status=1):
    txn = transaction_claims(original_transaction_id=otid)
    return chain.sign(notification_claims(kind, subtype, chain=chain, transaction=txn, renewal=renewal_claims(txn),
                                          status=status))


def _recover(capture, *args):
    out, err = StringIO(), StringIO()
    with capture(execute=True):
        call_command("apple_recover", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_walks_every_page_and_ingests_what_we_missed_once(apple_settings, apple_chain, fake_appstore,
                                                          django_capture_on_commit_callbacks):
    payloads = [_notification(apple_chain, f"20000000000002{i:02d}") for i in range(5)]
    payloads.append(_notification(AppleChain(name="Stranger"), "2000000000000299"))  # not ours: rejected
    fake_appstore.history = payloads
    fake_appstore.page_size = 2
    # One of them did reach us at the time.
    deliver("apple", f'{{"signedPayload": "{payloads[0]}"}}'.encode())
    assert WebhookEvent.objects.count() == 1

    since = (timezone.now() - timedelta(days=3)).date().isoformat()
    out, err = _recover(django_capture_on_commit_callbacks, "--since", since, "--environment", "sandbox")

    assert "6 notifications read: 4 recovered, 1 already had, 1 rejected" in out
    assert "6 notifications" in err  # the progress bar
    pages = [r for r in fake_appstore.requests if r["path"] == "/inApps/v1/notifications/history"]
    assert len(pages) == 3
    assert [p["query"].get("paginationToken") for p in pages] == [None, ["2"], ["4"]]
    assert pages[0]["body"]["startDate"] < pages[0]["body"]["endDate"]
    assert "onlyFailures" not in pages[0]["body"]
    assert WebhookEvent.objects.filter(provider="apple").count() == 5
    assert WebhookEvent.objects.get(headers__contains={"X-Recovered-By": "apple_recover"},
                                    store_ids__contains=["2000000000000201"]).status == WebhookEvent.Status.PROCESSED
    assert set(Subscription.objects.values_list("status", flat=True)) == {Status.ACTIVE}
    assert Subscription.objects.count() == 5

    # Running it again changes nothing.
    out, _ = _recover(django_capture_on_commit_callbacks, "--since", since)
    assert "5 already had" in out
    assert WebhookEvent.objects.count() == 5


def test_only_failures_is_asked_of_apple(apple_settings, apple_chain, fake_appstore,
                                         django_capture_on_commit_callbacks):
    fake_appstore.history = [_notification(apple_chain, "2000000000000300")]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    out, _ = _recover(django_capture_on_commit_callbacks, "--since", since, "--only-failures")
    assert "1 recovered" in out
    assert fake_appstore.requests[-1]["body"]["onlyFailures"] is True


def test_store_down_is_a_clear_error(apple_settings, fake_appstore, django_capture_on_commit_callbacks):
    fake_appstore.script.append((503, None))
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    with pytest.raises(CommandError, match=r"could not be read.*Run again"):
        _recover(django_capture_on_commit_callbacks, "--since", since)


def test_dates_outside_apples_history_are_refused(apple_settings, django_capture_on_commit_callbacks):
    with pytest.raises(CommandError, match="180 days"):
        _recover(django_capture_on_commit_callbacks, "--since", "2020-01-01")


def test_beat_job_recovers_notifications_apple_failed_to_deliver(apple_settings, apple_chain, fake_appstore,
                                                                 django_capture_on_commit_callbacks):
    fake_appstore.history = [_notification(apple_chain, "2000000000000401")]
    with django_capture_on_commit_callbacks(execute=True):
        summary = recover_apple_notifications()
    assert "1 recovered" in summary
    [page] = [r for r in fake_appstore.requests if r["path"] == "/inApps/v1/notifications/history"]
    assert page["body"]["onlyFailures"] is True
    assert Subscription.objects.get(provider_subscription_id="2000000000000401").status == Status.ACTIVE


def test_beat_job_skips_when_the_api_is_not_configured(settings):
    settings.APPLE_KEY_ID = ""
    assert recover_apple_notifications().startswith("skipped")
