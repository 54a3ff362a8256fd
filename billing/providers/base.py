"""The small interface every store adapter implements, and the errors it speaks in.

An adapter is the only place that knows its store's wire format. It turns a webhook request into a
verified event, an event into snapshots, and can re-poll or verify a purchase through the store's
official client. Everything else (storing, retrying, applying) is provider-independent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import HttpResponse, JsonResponse

from billing.snapshots import Snapshot

if TYPE_CHECKING:
    from billing.models import Subscription


# --- Errors -----------------------------------------------------------------------------------

class ProviderError(Exception):
    """Base of the errors adapters raise."""


class NotConfigured(ProviderError):
    def __init__(self, provider: str, missing: list[str]):
        self.provider = provider
        self.missing = missing
        super().__init__(f"{provider} is not configured: set {', '.join(missing)}")


class Rejected(ProviderError):
    """An inbound request that is not authentic or not well-formed. Never processed; a retry cannot fix it."""

    def __init__(self, reason: str, *, status: int = 400, code: str = "rejected"):
        self.reason = reason
        self.status = status
        self.code = code
        super().__init__(reason)


class TransientError(ProviderError):
    """The store or a dependency failed in a way a retry may fix (5xx, 429, timeouts)."""


class StoreUnavailable(TransientError):
    """The store's API did not answer (the API answers 502)."""


class PermanentError(ProviderError):
    """Processing can never succeed for this input (e.g. an unknown purchase token)."""


class InvalidPurchase(ProviderError):
    """A purchase sent for verification that the store does not confirm (the API answers 400)."""

    def __init__(self, reason: str, *, code: str = "invalid_purchase"):
        self.code = code
        super().__init__(reason)


class NotSupported(ProviderError):
    """The operation does not exist for this store (e.g. changing an App Store plan from a server)."""


# --- Values -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifiedEvent:
    """What authenticate() returns: an authentic event, with what ingestion needs to store it."""

    dedupe_key: str
    event_type: str
    payload: dict  # the decoded, verified content (JSON-able)
    occurred_at: datetime | None = None
    # The store's own ids in this event (subscription id, purchase token, transaction id...),
    # kept so support can search events by them.
    store_ids: tuple[str, ...] = ()
    environment: str = ""


@dataclass(frozen=True)
class InboundEvent:
    """A stored event handed back to the adapter for processing (possibly days later, on replay)."""

    id: int
    provider: str
    dedupe_key: str
    event_type: str
    payload: dict
    body: bytes
    headers: Mapping[str, str]
    received_at: datetime
    occurred_at: datetime | None = None


@dataclass
class ParseResult:
    """What an event means: snapshots to apply, or why there is nothing to do."""

    snapshots: list[Snapshot] = field(default_factory=list)
    ignored_reason: str = ""
    # Follow-up work after the snapshots are applied and committed (e.g. acknowledge a purchase):
    # callables taking the list of billing.services.ApplyResult, run outside any transaction.
    # They may raise TransientError (the event is retried; everything before is idempotent).
    after_apply: list = field(default_factory=list)


# --- The interface ----------------------------------------------------------------------------

class ProviderAdapter:
    name: str = ""
    # Settings that must be non-empty for the provider to be on.
    required_settings: tuple[str, ...] = ()
    # Settings needed only for calling the store's API (re-poll, verify, cancel).
    api_settings: tuple[str, ...] = ()

    # configuration
    def missing_settings(self, *, for_api: bool = False) -> list[str]:
        names = self.required_settings + (self.api_settings if for_api else ())
        return [n for n in names if getattr(settings, n, None) in (None, "", [])]

    def is_configured(self) -> bool:
        return not self.missing_settings()

    def ensure_configured(self, *, for_api: bool = False) -> None:
        missing = self.missing_settings(for_api=for_api)
        if missing:
            raise NotConfigured(self.name, missing)

    # inbound
    def authenticate(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
        """Verify the request and return the event, or raise Rejected. No store API call, no writes."""
        raise NotImplementedError

    def synchronous_response(self, event: VerifiedEvent) -> HttpResponse | None:
        """An answer the store needs right away (e.g. Xsolla's user validation), or None to store and queue."""
        return None

    def parse(self, event: InboundEvent) -> ParseResult:
        """Turn a stored event into snapshots. May call the store's API (raise TransientError to retry)."""
        raise NotImplementedError

    # outbound
    def fetch(self, subscription: Subscription) -> Snapshot:
        """Re-poll: the subscription's current state at the store."""
        raise NotSupported(f"{self.name} has no re-poll")

    def verify(self, purchase: Mapping, *, user_id: str | None) -> ParseResult:
        """Verify a purchase sent by an app (the request body), server to server: the store's state as
        snapshots (the caller links them to `user_id`, checks ownership and applies them, then runs
        `after_apply`). Raise InvalidPurchase (400) or StoreUnavailable (502)."""
        raise NotSupported(f"{self.name} purchases are not verified through this API")

    def cancel(self, subscription: Subscription) -> Snapshot | None:
        """Stop renewal at period end through the store. Returns the new state if the store tells it."""
        raise NotSupported(f"{self.name} subscriptions cannot be canceled from here")

    def change_plan(self, subscription: Subscription, *, price_id: str) -> Snapshot | None:
        raise NotSupported(f"{self.name} subscriptions cannot change plan from here")

    def admin_actions(self) -> list:
        """Django admin actions this store offers on its subscriptions (e.g. Google revoke/defer)."""
        return []

    def admin_list_filters(self) -> list:
        """Extra list filters for the subscriptions admin (e.g. Google purchases near their ack deadline)."""
        return []

    # answers in the store's own dialect
    def success_response(self, *, duplicate: bool) -> HttpResponse:
        return JsonResponse({"status": "duplicate" if duplicate else "received"}, status=200)

    def error_response(self, *, status: int, code: str, message: str) -> HttpResponse:
        return HttpResponse(json.dumps({"error": {"code": code, "message": message}}), status=status,
                            content_type="application/json")
