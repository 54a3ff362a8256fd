"""The Transactions list's "Export CSV": the whole filtered list (not one page), for staff who may
export finance data; others see no button and get 403."""

import csv
import io

import pytest
from django.contrib.auth.models import Permission

from billing.snapshots import Provider, TransactionKind
from finance.transactions import HEADER
from tests.factories import SubscriptionFactory, UserFactory

from .ledger import at, ledger_row

pytestmark = pytest.mark.django_db

LIST = "/admin/billing/transaction/"
EXPORT = "/admin/billing/transaction/export/"


def staff_member(*codenames: str):
    user = UserFactory(username=f"staff-{'-'.join(codenames) or 'plain'}", is_superuser=False)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="billing"))
    return user


@pytest.fixture
def ledger():
    apple = SubscriptionFactory(provider=Provider.APPLE, provider_subscription_id="2000000000000001")
    for day in range(1, 31):  # more than one page would hold with list_per_page 20
        ledger_row(subscription=apple, provider_transaction_id=f"20000000000001{day:02d}", kind=TransactionKind.RENEWAL,
                   amount_minor=980, currency="JPY", occurred_at=at(f"2026-11-{day:02d}T10:00:00"))
    ledger_row(provider_transaction_id="in_1", occurred_at=at("2026-11-15T00:00:00"))


def exported(response) -> list[dict]:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_export_holds_every_row_of_the_filtered_list_in_ledger_order(client, ledger, settings):
    client.force_login(staff_member("view_transaction", "export_finance"))
    page = client.get(LIST, {"provider__exact": "apple"})
    html = page.content.decode()
    assert page.status_code == 200
    assert 'href="/admin/billing/transaction/export/?provider__exact=apple"' in html and "Export CSV" in html
    rows = exported(client.get(EXPORT, {"provider__exact": "apple", "o": "-1", "p": "2"}))
    assert tuple(rows[0]) == HEADER
    assert [r["store_transaction_id"] for r in rows] == [f"20000000000001{day:02d}" for day in range(1, 31)]
    assert {r["amount"] for r in rows} == {"980"}
    everything = exported(client.get(EXPORT))
    assert len(everything) == 31
    searched = exported(client.get(EXPORT, {"q": "in_1"}))
    assert [r["store_transaction_id"] for r in searched] == ["in_1"]


def test_staff_without_the_permission_see_no_button_and_get_403(client, ledger):
    client.force_login(staff_member("view_transaction"))
    page = client.get(LIST)
    assert page.status_code == 200 and "Export CSV" not in page.content.decode()
    response = client.get(EXPORT)
    assert response.status_code == 403
    assert b"2000000000000101" not in response.content


def test_signed_out_visitors_are_sent_to_the_login_page(client, ledger):
    response = client.get(EXPORT)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_filters_the_list_does_not_know_are_refused(client, ledger):
    client.force_login(staff_member("view_transaction", "export_finance"))
    assert client.get(EXPORT, {"no_such_field__exact": "1"}).status_code == 400
