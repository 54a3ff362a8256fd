"""The admin as support uses it: find an event by a store id, read it, see the day's counts, link orphans."""

import pytest

from billing.models import Subscription
from tests.factories import SubscriberFactory
from tests.helpers import stream_events
from webhooks.models import WebhookEvent

from .adapter import event_body
from .helpers import post

pytestmark = pytest.mark.django_db


def test_search_by_the_store_subscription_id_and_the_pretty_body(send, admin_client):
    send(event_body("evt_s1", subscription_id="sub_FINDME"))
    send(event_body("evt_s2", subscription_id="sub_other"))
    event = WebhookEvent.objects.get(dedupe_key="evt_s1")

    listing = admin_client.get("/admin/webhooks/webhookevent/", {"q": "sub_FINDME"}).content.decode()
    assert f"/admin/webhooks/webhookevent/{event.pk}/change/" in listing
    assert "evt_s2" not in listing

    page = admin_client.get(f"/admin/webhooks/webhookevent/{event.pk}/change/").content.decode()
    assert '&quot;subscription_id&quot;: &quot;sub_FINDME&quot;' in page  # indented JSON, escaped
    assert "manual:sub_FINDME created: ACTIVE" in page
    # read-only audit: no save button, no delete
    assert 'name="_save"' not in page
    assert admin_client.post(f"/admin/webhooks/webhookevent/{event.pk}/delete/").status_code == 403


def test_admin_index_counts_per_provider_and_keeps_the_app_list(send, client, admin_client):
    send(event_body("evt_c1"))
    send(event_body("evt_c2", type="permanent"))
    post(client, event_body("evt_c3"), signature="bad")

    page = admin_client.get("/admin/").content.decode()

    assert "Webhook events, last 24 hours" in page
    row = page[page.index("?provider__exact=hooktest"):]
    cells = [c.split("</td>")[0] for c in row.split("<td>")[1:9]]
    # received, waiting, processed, ignored, failed (linked), dead, rejected
    assert cells[0] == "2" and cells[2] == "1" and "1" in cells[4] and cells[6] == "1"
    assert cells[1] == "0"  # nothing waiting: both were processed or failed (not the total again)
    # the default app list stays: every area finds its models
    assert "/admin/webhooks/webhookevent/" in page and "/admin/django_celery_beat/" in page


def test_an_orphan_is_applied_listed_and_linked_by_support(send, admin_client, django_capture_on_commit_callbacks):
    send(event_body("evt_orphan", subscription_id="sub_NOUSER", user_id=None))
    sub = Subscription.objects.get()
    assert sub.subscriber is None and sub.status == "ACTIVE"  # applied, without a user
    event = WebhookEvent.objects.get()

    listing = admin_client.get("/admin/webhooks/webhookevent/", {"orphan": "yes"}).content.decode()
    assert "evt_orphan" in listing and "(no user)" in listing

    user = SubscriberFactory(external_id="777")
    form = admin_client.post("/admin/webhooks/webhookevent/",
                             {"action": "link_orphans", "_selected_action": [event.pk]})
    assert "sub_NOUSER" in form.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/webhooks/webhookevent/", {
            "action": "link_orphans", "_selected_action": [event.pk], "apply": "1", "external_id": "777",
            "reason": "ticket 12"})

    sub.refresh_from_db()
    assert sub.subscriber == user
    assert [(e["userId"], e["newStatus"]) for e in stream_events()] == [("777", "ACTIVE")]
