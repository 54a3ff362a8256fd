"""Helpers for the Google Play tests: captured lifecycles, pushes, and processing an event the way
the webhook pipeline does (authenticate → store → parse → apply_snapshot → after_apply)."""

import json
from datetime import UTC, datetime
from pathlib import Path

from django.utils import timezone

from billing.apply import apply_snapshot
from billing.providers.base import InboundEvent
from billing.snapshots import Cause, CauseKind
from tests.fakes.google import pubsub_body

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "google"
PACKAGE = "network.loki.messenger"
AUDIENCE = "https://billing.example.com/webhooks/google"
PUSH_EMAIL = "pubsub-push@test-project.iam.gserviceaccount.com"
PLACEHOLDER = "__OBFUSCATED_EXTERNAL_ACCOUNT_ID__"


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


def push_request(fake, notification: dict | None = None, *, message_id=None, token=None, body: bytes | None = None,
                 query=None) -> tuple[dict, bytes, dict]:
    """(headers, body, query) of a Pub/Sub push, authenticated with a valid OIDC token by default."""
    token = token if token is not None else fake.push_token(audience=AUDIENCE, email=PUSH_EMAIL)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers, body if body is not None else pubsub_body(notification, message_id=message_id), query or {}


def inbound(verified, body: bytes = b"", event_id: int = 1) -> InboundEvent:
    return InboundEvent(id=event_id, provider="google", dedupe_key=verified.dedupe_key,
                        event_type=verified.event_type, payload=json.loads(json.dumps(verified.payload)),
                        body=body, headers={}, received_at=timezone.now(), occurred_at=verified.occurred_at)


def process(adapter, fake, notification: dict):
    """Push → authenticate → parse → apply → follow-ups, as the pipeline does. Returns the ParseResult."""
    headers, body, query = push_request(fake, notification)
    verified = adapter.authenticate(headers, body, query)
    result = adapter.parse(inbound(verified, body))
    applied = [apply_snapshot(s, Cause(CauseKind.WEBHOOK, ref=verified.dedupe_key)) for s in result.snapshots]
    for follow_up in result.after_apply:
        follow_up(applied)
    return result
