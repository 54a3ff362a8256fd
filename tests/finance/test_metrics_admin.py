"""Finance's admin: exchange rates staff enter (normalized, audited) and the metric days, read-only."""

from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from audit.models import AuditEntry
from finance.models import ExchangeRate, MetricDay
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client():
    client = Client()
    client.force_login(UserFactory(username="finance-admin"))
    return client


def test_a_rate_is_for_a_whole_month_in_upper_case_and_audited(staff_client):
    response = staff_client.post("/admin/finance/exchangerate/add/",
                                 {"currency": "usd", "month": "2026-10-17", "rate": "0.92"})
    assert response.status_code == 302
    rate = ExchangeRate.objects.get()
    assert (rate.currency, rate.month, rate.rate) == ("USD", date(2026, 10, 1), Decimal("0.92"))
    entry = AuditEntry.objects.get(action="finance.exchange_rate_set")
    assert entry.actor_label == "finance-admin" and entry.details["rate"] == "0.92"

    refused = staff_client.post("/admin/finance/exchangerate/add/",
                                {"currency": "US", "month": "2026-11-01", "rate": "-1"})
    assert refused.status_code == 200 and ExchangeRate.objects.count() == 1


def test_metric_days_are_listed_read_only(staff_client):
    MetricDay.objects.create(day=date(2026, 10, 1), provider="stripe", store_product_id="price_monthly",
                             currency="USD", entitled=12, mrr_minor=11988)
    listing = staff_client.get("/admin/finance/metricday/")
    assert listing.status_code == 200 and "price_monthly" in listing.content.decode()
    assert staff_client.get("/admin/finance/metricday/add/").status_code == 403
