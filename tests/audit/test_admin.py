"""The audit log in the admin: read-only, filtered by actor, action, date, user and subscription,
searched, and exported as CSV (the filtered rows, streamed) only by staff with audit.export_auditentry."""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey
from accounts.principals import Principal
from audit.models import AuditEntry
from audit.records import record, record_api_call
from tests.factories import SubscriberFactory, UserFactory

pytestmark = pytest.mark.django_db

LIST = reverse("admin:audit_auditentry_changelist")
EXPORT = reverse("admin:audit_auditentry_export")


@pytest.fixture
def log():
    kim, lee = UserFactory(username="kim"), UserFactory(username="lee")
    ann, bob = SubscriberFactory(external_id="3001"), SubscriberFactory(external_id="3002")
    key = ApiKey.objects.create(name="orders-service", prefix="abcd1234", hashed_key="0" * 64, scopes=["verify"])
    record(actor=kim, action="grant", reason="goodwill", subscriber=ann, subscription_id=11)
    record(actor=lee, action="revoke", reason="=HYPERLINK(\"http://x\")", subscriber=bob, subscription_id=12)
    record_api_call(actor=Principal(kind=Principal.SERVICE, name=key.name, api_key_id=key.pk), action="api_verify",
                    user_id="3001", subscription_id=13, details={"provider": "apple"})
    old = record(actor=kim, action="grant", reason="last year", subscriber=bob, subscription_id=14)
    AuditEntry.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    return {"kim": kim, "lee": lee, "key": key}


def rows_of(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def listed(client, **query) -> str:
    response = client.get(LIST, query)
    assert response.status_code == 200
    return response.content.decode()


def test_the_list_filters_and_searches(admin_client, log):
    page = listed(admin_client)
    assert "goodwill" in page and "API key orders-service" in page and "Export CSV" in page
    assert 'auditentry/add/' not in page  # nobody adds entries by hand
    assert "API key orders-service" not in listed(admin_client, actor_kind="staff")
    assert "goodwill" not in listed(admin_client, actor_kind="api_key")
    assert "goodwill" not in listed(admin_client, action__exact="revoke")
    assert "goodwill" not in listed(admin_client, actor_user__id__exact=log["lee"].pk)
    assert "goodwill" in listed(admin_client, q="3001") and "HYPERLINK" not in listed(admin_client, q="3001")
    assert "last year" not in listed(admin_client, created_at__year=timezone.now().year)
    assert "goodwill" not in listed(admin_client, subscription_id=12)


def test_export_is_the_filtered_rows_as_csv(admin_client, log):
    response = admin_client.get(EXPORT, {"actor_kind": "staff"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.streaming
    rows = rows_of(response)
    assert [r["action"] for r in rows] == ["revoke", "grant", "grant"]  # newest first, no API-key rows
    assert rows[1]["actor"] == "kim" and rows[1]["user_id"] == "3001" and rows[1]["reason"] == "goodwill"
    assert rows[0]["reason"] == "'=HYPERLINK(\"http://x\")"  # never run as a formula by a spreadsheet
    api = rows_of(admin_client.get(EXPORT, {"q": "orders-service"}))
    assert [(r["action"], r["actor_api_key_id"]) for r in api] == [("api_verify", str(log["key"].pk))]


def test_export_needs_its_permission(client, log):
    viewer = UserFactory(username="auditor", is_superuser=False)
    viewer.user_permissions.set([Permission.objects.get(codename="view_auditentry")])
    client.force_login(viewer)
    assert "goodwill" in listed(client) and "Export CSV" not in listed(client)
    assert client.get(EXPORT).status_code == 403
    viewer.user_permissions.add(Permission.objects.get(codename="export_auditentry"))
    viewer = type(viewer).objects.get(pk=viewer.pk)  # permissions are cached on the instance
    client.force_login(viewer)
    assert len(rows_of(client.get(EXPORT))) == 4


def test_entries_cannot_be_changed_or_deleted(admin_client, log):
    entry = AuditEntry.objects.first()
    page = admin_client.get(reverse("admin:audit_auditentry_change", args=[entry.pk])).content.decode()
    assert 'name="reason"' not in page  # shown, not editable
    assert admin_client.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code \
        == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_an_entry_shows_its_details(admin_client, log):
    entry = AuditEntry.objects.get(action="api_verify")
    page = admin_client.get(reverse("admin:audit_auditentry_change", args=[entry.pk])).content.decode()
    assert "&quot;provider&quot;: &quot;apple&quot;" in page and "API key orders-service" in page
