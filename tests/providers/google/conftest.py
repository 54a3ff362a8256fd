"""Google Play's fixtures (tests/billing/conftest.py imports `google` and `fake_play`) and builders:
the captured lifecycles, notifications, and a signed Pub/Sub push delivered through the real pipeline
(`push`: tests.helpers.deliver)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from billing.providers import registry
from billing.providers.google.auth import certificates
from billing.snapshots import Provider
from tests.fakes.google import FakeGooglePlay, pubsub_body
from tests.helpers import Delivered, deliver, drain
from webhooks.models import WebhookEvent

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "google"
PACKAGE = "network.loki.messenger"
AUDIENCE = "https://billing.example.com/webhooks/google"
PUSH_EMAIL = "pubsub-push@test-project.iam.gserviceaccount.com"
PLACEHOLDER = "__OBFUSCATED_EXTERNAL_ACCOUNT_ID__"


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
    settings.STORE_BUDGET_GOOGLE_PER_MINUTE = 3000
    settings.GOOGLE_UNKNOWN_TOKEN_POLICY = "orphan"
    certificates.clear()
    yield fake_play
    certificates.clear()


@pytest.fixture
def adapter(google):
    return registry.get_adapter(Provider.GOOGLE)


# --- captured lifecycles and notifications -----------------------------------------------------

def load_sequence(name: str, *, user_id: str = "42") -> list[dict]:
    text = (FIXTURES / "play_sequences" / name).read_text().replace(PLACEHOLDER, user_id)
    return json.loads(text)["steps"]


def sequence_names() -> list[str]:
    return sorted(p.name for p in (FIXTURES / "play_sequences").glob("*.json"))


def token_of(step: dict) -> str:
    return step["developerNotification"]["subscriptionNotification"]["purchaseToken"]


def subscription_notification(token: str, number: int, *, product="session_pro", millis: int | None = None) -> dict:
    millis = millis if millis is not None else int(datetime.now(UTC).timestamp() * 1000)
    return {"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": str(millis),
            "subscriptionNotification": {"version": "1.0", "notificationType": number, "purchaseToken": token,
                                         "subscriptionId": product}}


# --- pushes -------------------------------------------------------------------------------------

def push_token(fake, **claims) -> str:
    """An OIDC token as Pub/Sub signs it for our push subscription; `claims` change what it says."""
    return fake.push_token(**{"audience": AUDIENCE, "email": PUSH_EMAIL, **claims})


def push_request(fake, notification: dict | None = None, *, message_id=None, token=None, body: bytes | None = None,
                 query=None, headers=None) -> tuple[dict, bytes, dict]:
    """(headers, body, query) of a Pub/Sub push, authenticated with a valid OIDC token by default
    (`token=""`: none); `headers` are added (e.g. a relay's shared-token header)."""
    token = token if token is not None else push_token(fake)
    headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers, body if body is not None else pubsub_body(notification, message_id=message_id), query or {}


def push(fake, notification: dict | None = None, **request) -> Delivered:
    """POST the push to /webhooks/google and process it through the real pipeline."""
    headers, body, query = push_request(fake, notification, **request)
    return deliver("google", body, headers, query=query)


def retry(event: WebhookEvent) -> WebhookEvent:
    """The event's retry, made due now and processed by the drain (as the sweeper would have it)."""
    WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    drain()
    event.refresh_from_db()
    return event
