"""The App Store's fixtures: our own signing chain (`apple_chain`, its root as a file), the In-App
Purchase key (`api_key`), the fake App Store Server API (`fake_appstore`), the settings of a
deployment trusting our chain (`apple_settings`) or Apple's real roots (`real_apple_settings`), and for
the staff actions an active subscription held here and at the fake (`apple_sub`, `active_txn`).
tests/billing/conftest.py imports the first five."""

import pytest

from billing.models import Subscription
from billing.providers.apple.adapter import AppleAdapter
from billing.statuses import Status
from billing.sweeps import subscription_resync
from tests.factories import SubscriberFactory
from tests.fakes.apple import (
    APP_APPLE_ID,
    BUNDLE_ID,
    REAL_APP_APPLE_ID,
    REAL_BUNDLE_ID,
    ApiKey,
    AppleChain,
    FakeAppStoreServer,
    notification_claims,
    now_ms,
    renewal_claims,
    signed_body,
    transaction_claims,
)
from tests.helpers import deliver

STORE_ACTIONS_OTID = "2000000000000300"
DAY_MS = 86_400_000


@pytest.fixture(scope="session")
def apple_chain():
    return AppleChain()


@pytest.fixture(scope="session")
def apple_root_file(apple_chain, tmp_path_factory):
    path = tmp_path_factory.mktemp("apple") / "test-root.cer"
    path.write_bytes(apple_chain.root_der)
    return str(path)


@pytest.fixture(scope="session")
def api_key():
    return ApiKey()


@pytest.fixture
def fake_appstore(api_key):
    server = FakeAppStoreServer(api_key=api_key).start()
    yield server
    server.stop()


@pytest.fixture
def apple_settings(settings, apple_root_file, api_key, fake_appstore, tmp_path):
    """A deployment trusting our test root, with an In-App Purchase key and the API at the fake."""
    key_file = tmp_path / "SubscriptionKey_TESTKEY123.p8"
    key_file.write_bytes(api_key.p8())
    settings.APPLE_BUNDLE_ID = BUNDLE_ID
    settings.APPLE_APP_APPLE_ID = APP_APPLE_ID
    settings.APPLE_ROOT_CERTIFICATES = [apple_root_file]
    settings.APPLE_KEY_ID = api_key.key_id
    settings.APPLE_ISSUER_ID = api_key.issuer_id
    settings.APPLE_PRIVATE_KEY_FILE = str(key_file)
    settings.APPLE_API_BASE_URL = fake_appstore.url
    settings.APPLE_ENVIRONMENT = "Sandbox"
    settings.APPLE_ALLOW_SANDBOX = True
    settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS = False
    settings.APPLE_ONLINE_CHECKS = False
    return settings


@pytest.fixture
def real_apple_settings(settings):
    """The shipped Apple roots (the default) and the bundle of the real sandbox captures."""
    settings.APPLE_BUNDLE_ID = REAL_BUNDLE_ID
    settings.APPLE_APP_APPLE_ID = REAL_APP_APPLE_ID
    settings.APPLE_ONLINE_CHECKS = False
    settings.APPLE_ALLOW_SANDBOX = True
    return settings


@pytest.fixture
def adapter():
    return AppleAdapter()


@pytest.fixture
def active_txn():
    """A payment 10 days into its 30-day period (the App Store's signed claims)."""
    return transaction_claims(original_transaction_id=STORE_ACTIONS_OTID, transaction_id="2000000000000311",
                              purchase_ms=now_ms() - 10 * DAY_MS, expires_ms=now_ms() + 20 * DAY_MS)


@pytest.fixture
def apple_sub(apple_settings, apple_chain, fake_appstore, active_txn):
    """An active subscription as Apple has it, and as we hold it (re-read from the fake once)."""
    fake_appstore.add_subscription(apple_chain, active_txn, renewal_claims(active_txn))
    sub = Subscription.objects.create(provider="apple", provider_subscription_id=STORE_ACTIONS_OTID,
                                      environment="sandbox", status=Status.INACTIVE,
                                      subscriber=SubscriberFactory(external_id="77"))
    subscription_resync(subscription=sub)
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE
    assert sub.transactions.get().provider_transaction_id == active_txn["transactionId"]
    return sub


def consumption_request(apple_chain, txn: dict):
    """A CONSUMPTION_REQUEST about `txn` (a refund asked of Apple), delivered through the real webhook path."""
    claims = notification_claims("CONSUMPTION_REQUEST", chain=apple_chain, transaction=txn, renewal=renewal_claims(txn),
                                 consumptionRequestReason="UNINTENDED_PURCHASE")
    return deliver("apple", signed_body(apple_chain, claims)).event
