"""manage.py apple_recover: missed notifications come back through the webhook's own path, once."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.models import Subscription
from billing.statuses import Status
from tests.fakes.apple import AppleChain, notification_claims, renewal_claims, transaction_claims
from webhooks.models import WebhookEvent
from webhooks.tasks import recover_apple_notifications

pytestmark = pytest.mark.django_db


def _notification(chain, otid: str, kind="SUBSCRIBED", subtype="INITIAL_BUY", status=1):
    txn = transaction_claims(original_transaction_id=otid)
    return chain.sign(notification_claims(kind, subtype, chain=chain, transaction=txn, renewal=renewal_claims(txn),
                                          status=status))


def _recover(capture, *args):
    out, err = StringIO(), StringIO()
    with capture(execute=True):
        call_command("apple_recover", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_walks_every_page_and_ingests_what_we_missed_once(apple_settings, apple_chain, fake_appstore, client,
                                                          django_capture_on_commit_callbacks):
    payloads = [_notification(apple_chain, f"20000000000002{i:02d}") for i in range(5)]
    payloads.append(_notification(AppleChain(name="Stranger"), "2000000000000299"))  # not ours: rejected
    fake_appstore.history = payloads
    fake_appstore.page_size = 2
    # One of them did reach us at the time.
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/webhooks/apple", data=f'{{"signedPayload": "{payloads[0]}"}}', content_type="application/json")
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
