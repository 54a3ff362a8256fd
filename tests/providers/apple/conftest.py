"""The App Store's fixtures: our own signing chain (`apple_chain`, its root as a file), the In-App
Purchase key (`api_key`), the fake App Store Server API (`fake_appstore`), and the settings of a
deployment trusting our chain (`apple_settings`) or Apple's real roots (`real_apple_settings`).
tests/billing/conftest.py imports the first five."""

import pytest

from billing.providers.apple.adapter import AppleAdapter
from tests.fakes.apple import (
    APP_APPLE_ID,
    BUNDLE_ID,
    REAL_APP_APPLE_ID,
    REAL_BUNDLE_ID,
    ApiKey,
    AppleChain,
    FakeAppStoreServer,
)


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
