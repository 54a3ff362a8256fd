import json

import pytest

from billing.providers.google.adapter import GoogleAdapter
from billing.providers.google.push_auth import certificates
from tests.fakes.google import FakeGooglePlay

from .helpers import AUDIENCE, PACKAGE, PUSH_EMAIL


@pytest.fixture
def fake_play():
    fake = FakeGooglePlay(package=PACKAGE).start()
    yield fake
    fake.stop()


@pytest.fixture
def google(settings, fake_play, tmp_path):
    """Google Play configured against the fake: service account file (token_uri → the fake), API
    endpoint, OIDC audience/email and the certificate URL."""
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(fake_play.service_account_info()))
    settings.GOOGLE_PLAY_PACKAGE_NAME = PACKAGE
    settings.GOOGLE_SERVICE_ACCOUNT_FILE = str(path)
    settings.GOOGLE_PLAY_API_ENDPOINT = fake_play.base_url
    settings.GOOGLE_PUBSUB_AUDIENCE = AUDIENCE
    settings.GOOGLE_PUBSUB_SERVICE_ACCOUNT = PUSH_EMAIL
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = ""
    settings.GOOGLE_PUBSUB_CERTS_URL = f"{fake_play.base_url}/certs"
    settings.GOOGLE_PLAY_QUOTA_PER_MINUTE = 3000
    settings.GOOGLE_UNKNOWN_TOKEN_POLICY = "orphan"
    certificates.clear()
    yield fake_play
    certificates.clear()


@pytest.fixture
def adapter(google):
    return GoogleAdapter()
