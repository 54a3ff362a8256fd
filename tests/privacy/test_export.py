"""`manage.py export_subscriber`: everything we hold about a customer, as JSON."""

import json

import pytest
from django.core.management import CommandError, call_command

from tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_the_export_holds_every_kind_of_row(customer, tmp_path):
    # a second live paid subscription for the same entitlement: a double payment to export too
    from billing import double_payments

    SubscriptionFactory(subscriber=customer.subscriber, provider="apple", provider_subscription_id="1000000009",
                        product=customer.stripe_sub.product)
    double_payments.sweep()
    out = tmp_path / "export.json"
    call_command("export_subscriber", customer.user_id, "--output", str(out))
    data = json.loads(out.read_text())

    assert data["subscriber"]["external_id"] == customer.user_id and data["subscriber"]["email"] == customer.email
    assert data["subscriber"]["stripe_customer_id"] == customer.stripe_customer
    assert data["subscriber"]["google_obfuscated_account_id"] == customer.google_account
    assert data["subscriber"]["apple_app_account_token"] == customer.apple_token
    assert data["subscriber"]["xsolla_user_id"] == customer.xsolla_user
    subs = {s["provider_subscription_id"]: s for s in data["subscriptions"]}
    assert set(subs) == {customer.stripe_sub.provider_subscription_id, customer.purchase_token, "1000000009"}
    google = subs[customer.purchase_token]
    assert [t["kind"] for t in google["transactions"]] == ["purchase", "refund"]
    assert google["status_history"][0]["new_status"] == "EXPIRED"
    assert google["raw_snapshot"]["purchaseToken"] == customer.purchase_token
    assert subs[customer.stripe_sub.provider_subscription_id]["transactions"][0]["raw"]["customer_email"] == \
        customer.email
    assert len(data["double_payments"]) == 1
    assert customer.email in data["notes"][0]["text"]
    assert {e["action"] for e in data["audit_entries"]} == {"grant"}
    assert {e["payload"]["userId"] for e in data["stream_events"]} == {customer.user_id}
    assert len(data["stream_events"]) == 2 and len(data["outgoing_webhook_events"]) == 2
    assert data["admin_log"][0]["object_repr"] == customer.user_id
    events = {e["provider"]: e for e in data["webhook_events"]}
    assert set(events) == {"stripe", "google", "xsolla"}  # linked, or named by a token / identity only
    assert customer.user_id in events["stripe"]["body"]["text"]
    assert events["stripe"]["headers"]["X-Customer-Email"] == customer.email
    assert customer.purchase_token in events["google"]["body"]["text"] and events["google"]["status"] == "dead"


def test_export_to_standard_output_and_an_unknown_user(customer, capsys):
    call_command("export_subscriber", customer.user_id)
    assert json.loads(capsys.readouterr().out)["subscriber"]["external_id"] == customer.user_id
    with pytest.raises(CommandError, match="No subscriber"):
        call_command("export_subscriber", "nobody-here")


def test_another_customers_rows_are_not_exported(customer, django_capture_on_commit_callbacks, tmp_path):
    from tests.privacy.conftest import make_customer

    with django_capture_on_commit_callbacks(execute=True):
        other = make_customer(suffix="QX5510")
    out = tmp_path / "export.json"
    call_command("export_subscriber", customer.user_id, "--output", str(out))
    text = out.read_text()
    assert all(secret not in text for secret in other.secrets)
