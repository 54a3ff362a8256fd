"""manage.py export_subscriptions --as-of, and the Subscriptions admin's "Export CSV"."""

import csv
import io
import json

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from billing.snapshots import TransactionKind
from billing.statuses import Status
from tests.factories import SubscriptionFactory, UserFactory

from .timeline import apply_at, at, payment

pytestmark = pytest.mark.django_db

MONTHLY = {"amount_minor": 999, "currency": "USD", "period_unit": "month", "period_value": 1}
YEARLY = {"amount_minor": 9900, "currency": "EUR", "period_unit": "year", "period_value": 1}


def export(tmp_path, *args, name="out") -> bytes:
    path = tmp_path / name
    call_command("export_subscriptions", *args, "--output", str(path))
    return path.read_bytes()


def rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_a_past_moment_gives_the_same_rows_before_and_after_later_changes(tmp_path):
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="sub_a", user_id="7", expires_at=at("2026-11-01"), **MONTHLY)
    apply_at(at("2026-10-02"), Status.TRIAL, sub_id="sub_b", user_id="8", expires_at=at("2026-10-09"),
             store_product_id="price_yearly", **YEARLY)
    with time_machine.travel(at("2026-10-03"), tick=False):
        first = export(tmp_path, "--as-of", "2026-10-03T00:00Z", name="first.csv")

    # Later: a renewal, a refund revoking the other, a new subscription, and a refund of the past arriving late.
    apply_at(at("2026-10-05"), Status.ACTIVE, sub_id="sub_b", user_id="8", expires_at=at("2027-10-05"),
             store_product_id="price_yearly", **YEARLY)
    apply_at(at("2026-10-06"), Status.REVOKED, sub_id="sub_a", user_id="7",
             transactions=(payment("re_1", at("2026-10-06"), 999, kind=TransactionKind.REFUND),), **MONTHLY)
    apply_at(at("2026-10-06"), Status.ACTIVE, sub_id="sub_c", user_id="9", **MONTHLY)
    apply_at(at("2026-10-02", 20), Status.CANCELED, sub_id="sub_b", recorded=at("2026-10-07"), **YEARLY)  # stale
    with time_machine.travel(at("2026-10-08"), tick=False):
        again = export(tmp_path, "--as-of", "2026-10-03T00:00Z", name="again.csv")
        now = rows(export(tmp_path, "--as-of", "2026-10-08T00:00Z", name="now.csv"))

    assert again == first
    a, b = rows(first)
    assert (a["store_subscription_id"], a["user_id"], a["status"], a["entitled"]) == ("sub_a", "7", "ACTIVE", "true")
    assert (a["price"], a["price_minor"], a["currency"], a["period_unit"], a["period_value"]) == (
        "9.99", "999", "USD", "month", "1")
    assert a["access_ends_at"] == "2026-11-01T12:00:00Z" and a["as_of"] == "2026-10-03T00:00:00Z"
    assert (b["status"], b["entitled"], b["store_product_id"], b["price"]) == ("TRIAL", "true", "price_yearly", "99.00")
    assert {r["store_subscription_id"]: (r["status"], r["entitled"]) for r in now} == {
        "sub_a": ("REVOKED", "false"), "sub_b": ("ACTIVE", "true"), "sub_c": ("ACTIVE", "true")}


def test_filters_json_lines_and_a_future_moment_refused(tmp_path):
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="sub_a", **MONTHLY)
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="sub_s", environment="sandbox", **MONTHLY)
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="tok", provider="google", **MONTHLY)
    with time_machine.travel(at("2026-10-03"), tick=False):
        lines = export(tmp_path, "--as-of", "2026-10-02", "--environment", "production", "--format", "jsonl")
        google = rows(export(tmp_path, "--as-of", "2026-10-02", "--provider", "google", name="g"))
        with pytest.raises(CommandError, match="future"):
            export(tmp_path, "--as-of", "2026-10-04")
    items = [json.loads(line) for line in lines.decode().splitlines()]
    assert [(i["provider"], i["store_subscription_id"]) for i in items] == [("stripe", "sub_a"), ("google", "tok")]
    assert [r["store_subscription_id"] for r in google] == ["tok"]


def test_writes_to_standard_output_by_default():
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="sub_a", **MONTHLY)
    out = io.StringIO()
    with time_machine.travel(at("2026-10-03"), tick=False):
        call_command("export_subscriptions", "--as-of", "2026-10-02", stdout=out)
    assert [r["store_subscription_id"] for r in rows(out.getvalue().encode())] == ["sub_a"]


def _staff(*perms):
    user = UserFactory(username=f"finance{len(perms)}", is_superuser=False)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="billing"))
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_export_needs_the_permission_and_exports_the_filtered_list():
    SubscriptionFactory(provider_subscription_id="sub_live", status=Status.ACTIVE)
    SubscriptionFactory(provider_subscription_id="sub_gone", status=Status.EXPIRED)
    url = "/admin/billing/subscription/export/?status__exact=ACTIVE"

    viewer = _staff("view_subscription")
    assert "Export CSV" not in viewer.get("/admin/billing/subscription/").content.decode()
    assert viewer.get(url).status_code == 403

    finance = _staff("view_subscription", "export_finance")
    listing = finance.get("/admin/billing/subscription/?status__exact=ACTIVE").content.decode()
    assert "Export CSV" in listing and "/admin/billing/subscription/export/?status__exact=ACTIVE" in listing
    response = finance.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    exported = rows(b"".join(response.streaming_content))
    assert [(r["store_subscription_id"], r["status"], r["entitled"]) for r in exported] == [
        ("sub_live", "ACTIVE", "true")]
