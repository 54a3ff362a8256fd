"""manage.py export_metrics and GET /api/finance/metrics: per day, week or month; the reporting currency."""

import csv
import io
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from finance.models import ExchangeRate, MetricDay

pytestmark = pytest.mark.django_db


def day_row(day: str, currency: str = "USD", store_product_id: str = "price_monthly", **figures) -> MetricDay:
    return MetricDay.objects.create(day=date.fromisoformat(day), provider="stripe", store_product_id=store_product_id,
                                    environment="production", currency=currency, **figures)


def export(*args) -> list[dict]:
    out = io.StringIO()
    call_command("export_metrics", *args, stdout=out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


@pytest.fixture
def two_weeks():
    """Mon 2026-10-05 … Sun 10-18: 10 entitled growing by one a day, one new and 999 of revenue each day."""
    for n in range(14):
        day = (date(2026, 10, 5) + timedelta(days=n)).isoformat()
        day_row(day, entitled=10 + n, new=1, payments=1, gross_revenue_minor=999, mrr_minor=(10 + n) * 999)


def test_per_day_every_row_with_amounts_as_decimals_and_minor_units(two_weeks):
    rows = export("--from", "2026-10-05", "--to", "2026-10-06")
    assert [(r["period_start"], r["period_end"], r["entitled"], r["gross_revenue"], r["gross_revenue_minor"])
            for r in rows] == [("2026-10-05", "2026-10-05", "10", "9.99", "999"),
                               ("2026-10-06", "2026-10-06", "11", "9.99", "999")]
    assert rows[0]["mrr"] == "99.90" and rows[0]["reporting_currency"] == "" and rows[0]["conversion"] == ""


def test_per_week_stocks_are_the_last_days_and_flows_are_summed(two_weeks):
    rows = export("--from", "2026-10-05", "--to", "2026-10-15", "--interval", "week")
    assert [(r["period_start"], r["period_end"], r["entitled"], r["new"], r["gross_revenue_minor"], r["mrr_minor"])
            for r in rows] == [("2026-10-05", "2026-10-11", "16", "7", str(7 * 999), str(16 * 999)),
                               ("2026-10-12", "2026-10-15", "20", "4", str(4 * 999), str(20 * 999))]


def test_per_month_and_a_group_absent_on_the_last_day_has_no_stock(two_weeks):
    day_row("2026-10-06", currency="EUR", store_product_id="price_yearly", entitled=3, churned=1, mrr_minor=2475)
    out = io.StringIO()
    call_command("export_metrics", "--from", "2026-10-01", "--to", "2026-10-31", "--interval", "month",
                 "--format", "jsonl", stdout=out)
    items = {i["currency"]: i for i in map(json.loads, out.getvalue().splitlines())}
    assert (items["USD"]["period_start"], items["USD"]["period_end"]) == ("2026-10-01", "2026-10-31")
    assert (items["USD"]["entitled"], items["USD"]["new"]) == (0, 14)  # no row on the 31st: nothing entitled
    assert (items["EUR"]["entitled"], items["EUR"]["churned"], items["EUR"]["mrr_minor"]) == (0, 1, 0)


def test_to_a_reporting_currency_with_a_rate_and_flagged_without_one(settings, tmp_path):
    settings.FINANCE_REPORTING_CURRENCY = "EUR"
    ExchangeRate.objects.create(currency="USD", month=date(2026, 10, 1), rate=Decimal("0.9"))
    day_row("2026-10-05", currency="USD", payments=1, gross_revenue_minor=1000, refunds=1, refunds_minor=100,
            entitled=1, mrr_minor=1000)
    day_row("2026-10-05", currency="EUR", store_product_id="price_eur", gross_revenue_minor=500, payments=1)
    day_row("2026-10-05", currency="GBP", store_product_id="price_gbp", gross_revenue_minor=700, payments=1)
    day_row("2026-11-02", currency="USD", gross_revenue_minor=1000, payments=1)  # no rate for November
    path = tmp_path / "m.csv"
    call_command("export_metrics", "--from", "2026-10-01", "--to", "2026-11-30", "--interval", "month",
                 "--output", str(path))
    rows = {(r["period_start"], r["currency"]): r for r in csv.DictReader(io.StringIO(path.read_text()))}
    usd = rows[("2026-10-01", "USD")]
    assert (usd["conversion"], usd["reporting_currency"], usd["gross_revenue_reporting"],
            usd["gross_revenue_reporting_minor"], usd["refunds_amount_reporting"]) == (
        "converted", "EUR", "9.00", "900", "0.90")
    assert usd["gross_revenue"] == "10.00" and usd["currency"] == "USD"  # its own figures stay beside
    assert rows[("2026-10-01", "EUR")]["conversion"] == "same_currency"
    assert rows[("2026-10-01", "EUR")]["gross_revenue_reporting"] == "5.00"
    for key in (("2026-10-01", "GBP"), ("2026-11-01", "USD")):
        row = rows[key]
        assert (row["conversion"], row["gross_revenue_reporting"], row["mrr_reporting"]) == ("no_rate", "", "")
        assert row["gross_revenue"] in ("7.00", "10.00")  # never mixed: in its own currency only


# --- the API -----------------------------------------------------------------------------------

URL = "/api/finance/metrics"


def test_the_api_needs_the_finance_scope(client, service_auth, two_weeks):
    assert client.get(URL, {"from": "2026-10-05", "to": "2026-10-06"}, **service_auth("read")).status_code == 403
    assert client.get(URL, {"from": "2026-10-05", "to": "2026-10-06"}, REMOTE_ADDR="203.0.113.7").status_code in (
        401, 403)
    response = client.get(URL, {"from": "2026-10-05", "to": "2026-10-11", "interval": "week"},
                          **service_auth("finance"))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    assert (row["entitled"], row["new"]) == ("16", "7")


def test_the_api_streams_json_lines(client, service_auth, two_weeks):
    response = client.get(URL, {"from": "2026-10-05", "to": "2026-10-06", "format": "jsonl"},
                          **service_auth("finance"))
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    items = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [i["entitled"] for i in items] == [10, 11]


@pytest.mark.parametrize(("query", "code"), [
    ({"to": "2026-10-06"}, "invalid"),
    ({"from": "2026-13-01", "to": "2026-10-06"}, "invalid"),
    ({"from": "2026-10-05", "to": "2026-10-06", "interval": "year"}, "invalid"),
    ({"from": "2026-10-05", "to": "2026-10-06", "format": "xlsx"}, "invalid"),
    ({"from": "2026-10-06", "to": "2026-10-05"}, "invalid_range"),
    ({"from": "1990-01-01", "to": "2026-10-05"}, "invalid_range"),
])
def test_bad_parameters_are_a_400_in_the_error_shape(client, service_auth, query, code):
    response = client.get(URL, query, **service_auth("finance"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_the_schema_documents_the_endpoint(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"][URL]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"from", "to", "interval", "format"}
    assert {"text/csv", "application/x-ndjson"} <= set(operation["responses"]["200"]["content"])
    assert {"ApiKey"} <= {name for option in operation["security"] for name in option}
