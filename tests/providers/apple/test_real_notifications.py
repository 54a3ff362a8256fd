"""Genuine Apple-signed sandbox notifications (tests/fixtures/apple/SOURCES.md) against Apple's real roots."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from billing.models import Transaction
from billing.providers.apple import verification
from billing.providers.base import Rejected
from billing.statuses import Status
from tests.fakes.apple import AppleChain
from webhooks.models import WebhookEvent

from .helpers import FIXTURES, REAL_ORIGINAL_TRANSACTION_ID, process, real_body, real_sequence, subscription

ALL_REAL = sorted(p.name for p in (FIXTURES / "signed_real_sandbox").glob("*.json"))


def test_the_shipped_g3_root_is_apples_and_the_default():
    g3 = next(p for p in django_settings.APPLE_ROOT_CERTIFICATES if p.endswith("AppleRootCA-G3.cer"))
    der = Path(g3).read_bytes()
    assert verification.sha256_fingerprint(der) == verification.APPLE_ROOT_CA_G3_SHA256
    assert verification.APPLE_ROOT_CA_G3_SHA256 == (
        "63:34:3A:BF:B8:9A:6A:03:EB:B5:7E:9B:3F:5F:A7:BE:7C:4F:5C:75:6F:30:17:B3:A8:C4:88:C3:65:3E:91:79")
    # Every shipped root loads (DER as shipped).
    assert len(verification.load_root_certificates(django_settings.APPLE_ROOT_CERTIFICATES)) == 3


@pytest.mark.parametrize("name", ALL_REAL)
def test_real_notification_verifies_against_the_g3_root(real_apple_settings, adapter, name):
    event = adapter.authenticate({}, real_body(name), {})
    assert event.environment == "sandbox"
    assert REAL_ORIGINAL_TRANSACTION_ID in event.store_ids
    # The nested JWS were verified and decoded too; nothing of them is left unverified in the payload.
    assert event.payload["transaction"]["originalTransactionId"] == REAL_ORIGINAL_TRANSACTION_ID
    assert "signedTransactionInfo" not in event.payload["notification"]["data"]
    assert event.event_type.split("/")[0] in name


def test_real_notification_is_rejected_when_the_roots_do_not_include_apples(real_apple_settings, adapter, tmp_path):
    other = tmp_path / "testCA.der"
    other.write_bytes(AppleChain().root_der)
    real_apple_settings.APPLE_ROOT_CERTIFICATES = [str(other)]
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, real_body("seq1_e00_SUBSCRIBED_RESUBSCRIBE.json"), {})
    assert exc.value.code == "verification_failure"
    assert "VERIFICATION_FAILURE" in exc.value.reason


def test_real_notification_for_another_bundle_is_rejected(real_apple_settings, adapter):
    real_apple_settings.APPLE_BUNDLE_ID = "com.example.someone-else"
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, real_body("sandbox_01_DID_RENEW.json"), {})
    assert exc.value.code == "invalid_app_identifier"


@pytest.mark.django_db
def test_lifecycle_1_upgrade_downgrade_auto_renew_off_expiry(real_apple_settings, adapter):
    seen = []
    for body in real_sequence("seq1"):
        process(adapter, body)
        seen.append(subscription(REAL_ORIGINAL_TRANSACTION_ID).status)
    assert seen == [Status.ACTIVE,  # RESUBSCRIBE (3 months)
                    Status.ACTIVE,  # UPGRADE to the weekly product, at once
                    Status.CANCELED,  # auto-renew off
                    Status.ACTIVE,  # DOWNGRADE queued, auto-renew back on
                    Status.ACTIVE,  # downgrade cancelled
                    Status.CANCELED,  # auto-renew off
                    Status.EXPIRED]  # EXPIRED/VOLUNTARY
    sub = subscription(REAL_ORIGINAL_TRANSACTION_ID)
    assert sub.store_product_id == "com.getsession.org.pro_sub"
    assert sub.auto_renew is False
    assert sub.expires_at == datetime(2025, 10, 6, 5, 19, 30, tzinfo=UTC)
    assert sub.environment == "sandbox"
    assert sub.subscriber is None  # the captures carry no appAccountToken: an orphan for support
    money = {t.provider_transaction_id: (t.kind, t.amount_minor, t.currency) for t in Transaction.objects.all()}
    assert money == {"2000001027701898": ("purchase", 599, "AUD"),  # 5990 milli-units = 5.99 AUD
                     "2000001027701928": ("purchase", 199, "AUD")}


@pytest.mark.django_db
def test_lifecycle_2_refund_of_an_earlier_period_keeps_the_current_one(real_apple_settings, adapter):
    results = [process(adapter, body) for body in real_sequence("seq2")]
    consumption = results[1][0]
    assert consumption.snapshots == []
    assert "consumption request recorded for support" in consumption.ignored_reason
    assert "2000001032604840" in consumption.ignored_reason

    sub = subscription(REAL_ORIGINAL_TRANSACTION_ID)
    # The refunded transaction (2025-10-13) is not the current period (2025-10-16): access stays.
    assert sub.status == Status.ACTIVE
    assert sub.store_product_id == "com.getsession.org.pro_sub_3_months"
    assert sub.expires_at == datetime(2025, 10, 16, 5, 25, 14, tzinfo=UTC)
    refund = Transaction.objects.get(provider_transaction_id="2000001032604840:refund")
    assert (refund.kind, refund.amount_minor, refund.currency) == ("refund", 199, "AUD")
    assert refund.occurred_at == datetime(2025, 10, 16, 5, 19, 59, tzinfo=UTC)
    assert Transaction.objects.get(provider_transaction_id="2000001032604840").kind == "purchase"


@pytest.mark.django_db
def test_replaying_both_lifecycles_through_the_webhook_endpoint(real_apple_settings, client,
                                                                  django_capture_on_commit_callbacks):
    bodies = real_sequence("seq1") + real_sequence("seq2")
    for body in bodies:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/webhooks/apple", data=body, content_type="application/json")
        assert response.status_code == 200, response.content
    sub = subscription(REAL_ORIGINAL_TRANSACTION_ID)
    assert sub.status == Status.ACTIVE
    assert sub.store_product_id == "com.getsession.org.pro_sub_3_months"
    events = WebhookEvent.objects.filter(provider="apple")
    assert events.count() == len(bodies)
    consumption = events.get(event_type="CONSUMPTION_REQUEST")
    assert consumption.status == WebhookEvent.Status.IGNORED
    assert "consumption request recorded for support" in consumption.outcome
    assert REAL_ORIGINAL_TRANSACTION_ID in consumption.store_ids_text  # support finds it by the subscription id
    assert events.filter(status=WebhookEvent.Status.PROCESSED).count() == len(bodies) - 1

    # A redelivery (same notificationUUID) is answered, not processed twice.
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post("/webhooks/apple", data=bodies[-1], content_type="application/json")
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert events.count() == len(bodies)
