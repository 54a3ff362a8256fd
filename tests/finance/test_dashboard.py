"""The finance dashboard (/admin/finance/dashboard/): charts with their tables from MetricDay rows, money
per currency, an empty state that says what to run, and only for staff allowed to see the metrics."""

import re
from datetime import date, timedelta

import pytest
from django.contrib.auth.models import Permission

from finance.models import MetricDay
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/finance/dashboard/"
START = date(2026, 9, 1)


def metric_days(start: date = START, days: int = 30) -> None:
    """A month of figures: Apple in USD and Google in EUR and USD, growing, with churn, trials and refunds."""
    ProductFactory(provider="apple", store_product_id="com.app.monthly", label="Premium (iOS)")
    for n in range(days):
        day = start + timedelta(days=n)
        for provider, product, currency, base, price in (("apple", "com.app.monthly", "USD", 100, 999),
                                                         ("google", "premium_monthly", "EUR", 50, 899),
                                                         ("google", "premium_monthly", "USD", 10, 999)):
            entitled = base + n
            MetricDay.objects.create(
                day=day, provider=provider, store_product_id=product, currency=currency, entitled=entitled,
                in_trial=n % 5, new=2, reactivated=n % 2, churned=1, trial_starts=4, trial_conversions=n % 4,
                payments=3, gross_revenue_minor=3 * price, refunds=n % 3 and 1, refunds_minor=(n % 3 and 1) * price,
                mrr_minor=entitled * price)


@pytest.fixture
def finance_user(client):
    user = UserFactory(username="fin", is_superuser=False)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="finance", codename="view_metricday"))
    client.force_login(user)
    return user


def test_the_dashboard_draws_each_chart_with_its_table(client, finance_user):
    metric_days()
    response = client.get(URL, {"start": "2026-09-01", "end": "2026-09-30", "group": "provider"})
    assert response.status_code == 200
    keys = [chart.key for chart in response.context["charts"]]
    assert keys == ["subscribers", "mrr-eur", "mrr-usd", "new-churned", "trials", "refunds-eur", "refunds-usd"]
    page = response.content.decode()
    assert page.count('class="finance-chart"') == 7
    assert not re.search(r'src="(https?:)?//', page)  # nothing from another host
    charts = {chart.key: chart for chart in response.context["charts"]}

    subscribers = charts["subscribers"].table
    assert subscribers.columns == ["apple", "google", "total"]
    assert subscribers.rows[0] == ("01 Sep", ["100", "60", "160"])
    assert subscribers.footer == ("at the end", ["129", "118", "247"])
    # MRR: EUR and USD never added together; Google's USD row joins Apple's USD in the USD chart.
    assert charts["mrr-eur"].table.columns == ["google", "total"]
    assert charts["mrr-eur"].table.rows[0][1] == ["449.50 EUR", "449.50 EUR"]
    assert charts["mrr-usd"].table.rows[0][1] == ["999.00 USD", "99.90 USD", "1,098.90 USD"]
    assert charts["new-churned"].table.rows[1][1][0] == "+3 / -1"  # 2 new + 1 reactivated, 1 churned
    assert charts["trials"].table.rows[2][1][0] == "2/4 (50%)"
    assert charts["refunds-usd"].table.rows[1][1][0] == "1 · 9.99 USD"
    assert "MRR in EUR" in page and "subscribers" in page  # titles and axis labels are in the SVG


def test_weeks_and_months_read_stocks_at_the_end_and_sum_flows(client, finance_user):
    metric_days()
    response = client.get(URL, {"start": "2026-09-01", "end": "2026-09-30", "interval": "month"})
    charts = {chart.key: chart for chart in response.context["charts"]}
    assert charts["subscribers"].table.rows == [("Sep 2026", ["129", "118", "247"])]
    assert charts["new-churned"].table.rows[0][1][-1] == f"+{30 * 2 * 3 + 15 * 3} / -{30 * 3}"


def test_grouped_by_product_uses_the_catalogue_label(client, finance_user):
    metric_days()
    response = client.get(URL, {"start": "2026-09-01", "end": "2026-09-30", "group": "product"})
    columns = response.context["charts"][0].table.columns
    assert columns == ["Premium (iOS)", "google:premium_monthly", "total"]


def test_periods_without_figures_are_gaps_not_zeros(client, finance_user):
    metric_days(days=10)
    response = client.get(URL, {"start": "2026-08-30", "end": "2026-09-10"})
    table = response.context["charts"][0].table
    assert [label for label, _cells in table.rows] == [f"{d:02d} Sep" for d in range(1, 11)]
    assert len(response.context["missing"]) == 2
    assert "metrics_rebuild --from 2026-08-30 --to 2026-09-10" in response.content.decode()
    svg = str(response.context["charts"][0].svg)
    assert svg.count("<polyline") == 2  # one line per provider, starting on 1 Sep (no drop to zero before)


def test_with_no_metrics_the_page_says_what_to_run(client, finance_user):
    response = client.get(URL, {"start": "2026-10-01", "end": "2026-10-31"})
    page = response.content.decode()
    assert response.status_code == 200 and response.context["empty"]
    assert "manage.py metrics_rebuild --from 2026-10-01 --to 2026-10-31" in page
    assert 'class="finance-chart"' not in page


def test_default_range_is_the_last_90_days(client, finance_user):
    response = client.get(URL)
    params = response.context["params"]
    assert (params["end"] - params["start"]).days == 89 and params["interval"] == "day"
    assert response.context["empty"]


def test_a_bad_range_shows_the_error_and_the_defaults(client, finance_user):
    response = client.get(URL, {"start": "2026-10-31", "end": "2026-10-01"})
    assert response.status_code == 200 and "is after" in response.content.decode()


def test_only_staff_with_the_metrics_permission_see_it(client):
    client.force_login(UserFactory(username="agent", is_superuser=False))
    assert client.get(URL).status_code == 403
    assert "Finance dashboard" not in client.get("/admin/").content.decode()
    client.logout()
    assert client.get(URL).status_code == 302  # to the admin's login


def test_the_admin_index_links_to_it(client, finance_user):
    page = client.get("/admin/").content.decode()
    assert re.search(rf'<a href="{URL}">Finance dashboard</a>', page)
