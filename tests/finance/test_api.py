"""GET /api/finance/transactions: the same export for a BI tool, streamed, for `finance` keys only."""

import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse

from billing.snapshots import Provider, TransactionKind
from finance.transactions import HEADER
from tests.api_support import UNTRUSTED, bearer, configure_jwt
from tests.factories import SubscriptionFactory

from .ledger import at, ledger_row

pytestmark = pytest.mark.django_db

URL = "/api/finance/transactions"
NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}


@pytest.fixture
def rows():
    google = SubscriptionFactory(provider=Provider.GOOGLE, provider_subscription_id="token-1")
    ledger_row(subscription=google, provider_transaction_id="GPA.1", amount_minor=1250, currency="KWD",
               occurred_at=at("2026-11-02T00:00:00"))
    ledger_row(provider_transaction_id="in_1", amount_minor=500, currency="JPY", occurred_at=at("2026-11-03T00:00:00"))
    ledger_row(provider_transaction_id="re_1", kind=TransactionKind.REFUND, occurred_at=at("2026-11-04T00:00:00"))
    ledger_row(provider_transaction_id="in_dec", occurred_at=at("2026-12-01T00:00:00"))


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_finance_key_gets_the_csv_streamed(client, service_auth, rows):
    response = client.get(URL, NOVEMBER, **service_auth("finance"))
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="transactions_2026-11-01_2026-11-30.csv"'
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert tuple(rows[0]) == HEADER
    assert [(r["store_transaction_id"], r["amount"]) for r in rows] == [("GPA.1", "1.250"), ("in_1", "500"),
                                                                        ("re_1", "9.99")]
    assert response["X-Recorded-Before"].endswith("Z")


def test_recorded_before_header_reproduces_the_export(client, service_auth, rows):
    headers = service_auth("finance")
    first = client.get(URL, NOVEMBER, **headers)
    first_bytes = body(first)
    ledger_row(provider_transaction_id="re_late", kind=TransactionKind.REFUND, occurred_at=at("2026-11-05T00:00:00"))
    assert b"re_late" in body(client.get(URL, NOVEMBER, **headers))
    again = client.get(URL, {**NOVEMBER, "recorded_before": first["X-Recorded-Before"]}, **headers)
    assert body(again) == first_bytes


def test_jsonl_and_filters(client, service_auth, rows):
    response = client.get(URL, {**NOVEMBER, "format": "jsonl", "provider": "google", "environment": "all"},
                          **service_auth("finance"))
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    (line,) = body(response).decode().splitlines()
    assert json.loads(line) | {"amount_minor": 1250, "currency": "KWD"} == json.loads(line)


def test_keys_without_the_finance_scope_are_refused(client, service_auth, rows):
    response = client.get(URL, NOVEMBER, **service_auth("check", "read", "manage"))
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This API key lacks the 'finance' scope."
    assert b"in_1" not in response.content


def test_no_credentials_is_401_and_end_users_are_refused(client, settings, rows):
    response = client.get(URL, NOVEMBER, REMOTE_ADDR=UNTRUSTED)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    configure_jwt(settings)
    assert client.get(URL, NOVEMBER, **bearer("42")).status_code == 403


@pytest.mark.parametrize(("query", "param"), [
    ({}, "from"),
    ({"from": "2026-11-01"}, "to"),
    ({"from": "2026-13-01", "to": "2026-11-30"}, "from"),
    ({"from": "2026-11-30", "to": "2026-11-01"}, "to"),
    ({**NOVEMBER, "format": "xlsx"}, "format"),
    ({**NOVEMBER, "provider": "paypal"}, "provider"),
    ({**NOVEMBER, "environment": "live"}, "environment"),
    ({**NOVEMBER, "recorded_before": "later"}, "recorded_before"),
    ({**NOVEMBER, "recorded_before": "2999-01-01T00:00:00Z"}, "recorded_before"),
])
def test_bad_parameters_are_400_in_the_error_shape(client, service_auth, query, param):
    response = client.get(URL, query, **service_auth("finance"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["details"] == {"param": param}
    assert param in error["message"]


def test_the_endpoint_is_in_the_openapi_schema(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"][URL]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"from", "to", "format", "provider", "environment",
                                                            "recorded_before"}
    assert set(operation["responses"]["200"]["content"]) == {"text/csv", "application/x-ndjson"}
    assert {"400", "401", "403"} <= set(operation["responses"])
    assert {"ApiKey": []} in operation["security"]
