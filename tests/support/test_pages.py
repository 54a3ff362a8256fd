"""The timeline on the admin's subscriber and subscription pages, and staff notes added from it."""

import pytest
from django.contrib.auth.models import Permission

from audit.models import Note
from billing.apply import apply_snapshot
from billing.models import Subscription
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status
from tests.factories import UserFactory, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def sub(db):
    apply_snapshot(snapshot(Status.ACTIVE, 0, user_id="5001"), Cause(CauseKind.WEBHOOK, ref="x"))
    apply_snapshot(snapshot(Status.ON_GRACE, 5, user_id="5001"), Cause(CauseKind.WEBHOOK, ref="y"))
    return Subscription.objects.get(provider_subscription_id="sub_1")


def _viewer(username="viewer", *codenames):
    user = UserFactory(username=username, is_superuser=False)
    for name in ("accounts.view_subscriber", "billing.view_subscription", *codenames):
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def test_a_note_added_on_the_subscriber_page_shows_on_its_timeline_with_its_author(client, sub):
    client.force_login(UserFactory(username="carol"))
    page = f"/admin/accounts/subscriber/{sub.subscriber.pk}/change/"
    assert 'id="note-form"' in client.get(page).content.decode()
    response = client.post(f"/admin/support/subscribers/{sub.subscriber.pk}/notes/",
                           {"text": "  Called on 4 Dec: card replaced, told them to wait for the retry.  "})
    assert response.status_code == 302 and response["Location"] == page + "#timeline"
    note = Note.objects.get()
    assert (note.author.username, note.author_label, note.text) == (
        "carol", "carol", "Called on 4 Dec: card replaced, told them to wait for the retry.")
    html = client.get(page).content.decode()
    assert "Written by carol" in html and "Called on 4 Dec: card replaced" in html
    assert "Note added to the timeline." in html


def test_an_empty_note_is_refused_and_nothing_written(client, sub):
    client.force_login(UserFactory(username="carol"))
    response = client.post(f"/admin/support/subscribers/{sub.subscriber.pk}/notes/", {"text": "   "}, follow=True)
    assert "A note needs some text." in response.content.decode()
    assert not Note.objects.exists()


def test_staff_without_the_note_permission_read_but_cannot_write(client, sub):
    client.force_login(_viewer())
    html = client.get(f"/admin/accounts/subscriber/{sub.subscriber.pk}/change/").content.decode()
    assert 'id="timeline"' in html and 'id="note-form"' not in html
    response = client.post(f"/admin/support/subscribers/{sub.subscriber.pk}/notes/", {"text": "hello"})
    assert response.status_code == 403 and not Note.objects.exists()


def test_notes_are_only_added_by_post(client, sub):
    client.force_login(UserFactory(username="carol"))
    assert client.get(f"/admin/support/subscribers/{sub.subscriber.pk}/notes/").status_code == 405


def test_the_subscription_page_explains_its_status_and_shows_its_timeline(client, sub):
    client.force_login(_viewer())
    html = client.get(f"/admin/billing/subscription/{sub.pk}/change/").content.decode()
    assert "In grace period: the renewal payment failed" in html
    assert 'id="timeline"' in html and "Active → In grace period" in html
    # only status changes, by the filter's GET parameters
    html = client.get(f"/admin/billing/subscription/{sub.pk}/change/?tl_kind=note").content.decode()
    assert "Active → In grace period" not in html and "Nothing on the timeline for these filters" in html


def test_the_subscriber_page_explains_each_subscription(client, sub):
    client.force_login(_viewer())
    html = client.get(f"/admin/accounts/subscriber/{sub.subscriber.pk}/change/").content.decode()
    assert html.count("In grace period: the renewal payment failed") >= 2  # the inline and the timeline's head
