"""Xsolla (web shop subscriptions): webhooks, user validation and the subscriptions API.

- authenticate: `Authorization: Signature sha1(raw body + XSOLLA_WEBHOOK_SECRET)` (not an HMAC), then
  a JSON object with a `notification_type`; anything else is refused in Xsolla's error shape.
- user_validation is answered synchronously (204 / 400 INVALID_USER) and stored for the audit only.
- parse: with the subscriptions API configured, a notification about a subscription is a trigger: the
  state comes from `GET subscription` (observed now). Without it, the notification's own content is
  mapped (observed at its arrival). Money facts (payment, refunds) come from the webhook either way.
- fetch / cancel: the subscriptions API (client.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import Subscriber
from billing.models import Subscription, Transaction
from billing.providers.base import (
    Answer,
    InboundEvent,
    NotConfigured,
    ParseResult,
    PermanentError,
    ProviderAdapter,
    Rejected,
    VerifiedEvent,
    WebhookDialect,
)
from billing.snapshots import Environment, Provider, Snapshot, TransactionKind

from . import client, mapping
from .mapping import Stored
from .signature import signature_ok

logger = logging.getLogger(__name__)

# Xsolla's error codes (its documentation lists these for the 400 answer).
INVALID_SIGNATURE = "INVALID_SIGNATURE"
INVALID_USER = "INVALID_USER"
INVALID_PARAMETER = "INVALID_PARAMETER"
_XSOLLA_CODES = frozenset({INVALID_SIGNATURE, INVALID_USER, INVALID_PARAMETER, "INCORRECT_AMOUNT",
                           "INCORRECT_INVOICE"})


class XsollaDialect(WebhookDialect):
    def success(self, *, duplicate: bool) -> Answer:
        """204 and no body, for a first delivery and a repeat alike."""
        return Answer(204)

    def error(self, *, status: int, code: str, message: str) -> Answer:
        """Xsolla retries only on 5xx: every server-side failure is answered 500; everything the sender
        must fix is 400 with one of Xsolla's codes."""
        if status >= 500:
            status, code = 500, (code or "SERVER_ERROR").upper()
        else:
            status = 400
            code = code if code in _XSOLLA_CODES else INVALID_PARAMETER
        return Answer(status, {"error": {"code": code, "message": message}})


class XsollaAdapter(ProviderAdapter):
    name = Provider.XSOLLA
    dialect = XsollaDialect()
    required_settings = ("XSOLLA_WEBHOOK_SECRET",)
    api_settings = ("XSOLLA_PROJECT_ID", "XSOLLA_MERCHANT_ID", "XSOLLA_API_KEY")

    def api_configured(self) -> bool:
        return not self.missing_settings(for_api=True)

    # --- inbound ------------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
        if not signature_ok(body, headers.get("Authorization"), settings.XSOLLA_WEBHOOK_SECRET):
            raise Rejected("The Authorization header does not carry the body's signature.", status=400,
                           code=INVALID_SIGNATURE)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Rejected(f"The body is not JSON: {exc}", code=INVALID_PARAMETER) from exc
        if not isinstance(payload, dict):
            raise Rejected("The body is not a JSON object.", code=INVALID_PARAMETER)
        event_type = payload.get("notification_type")
        if not isinstance(event_type, str) or not event_type.strip():
            raise Rejected("notification_type is missing.", code=INVALID_PARAMETER)
        event_type = event_type.strip()
        _check_required(event_type, payload)
        tx = mapping.as_dict(payload.get("transaction"))
        sub = mapping.notification_subscription(payload)
        user_id = mapping.id_str(mapping.as_dict(payload.get("user")).get("id"))
        store_ids = tuple(i for i in (sub.subscription_id if sub else "", mapping.id_str(tx.get("id")), user_id) if i)
        return VerifiedEvent(
            dedupe_key=dedupe_key(event_type, payload, body),
            event_type=event_type,
            payload=payload,
            occurred_at=mapping.parse_date(tx.get("payment_date")) or mapping.parse_date(tx.get("date")),
            store_ids=store_ids,
            environment=Environment.SANDBOX if mapping.is_dry_run(payload) else "",
        )

    def synchronous_answer(self, event: VerifiedEvent) -> Answer | None:
        """user_validation: does the user exist here? Nothing is written either way."""
        if event.event_type != mapping.USER_VALIDATION:
            return None
        user_id = mapping.id_str(mapping.as_dict(event.payload.get("user")).get("id"))
        if _subscriber_exists(user_id):
            return self.dialect.success(duplicate=False)
        return self.dialect.error(status=400, code=INVALID_USER, message=f"Unknown user {user_id!r}.")

    def parse(self, event: InboundEvent) -> ParseResult:
        body = event.payload
        event_type = event.event_type
        if event_type == mapping.USER_VALIDATION:
            return ParseResult(ignored_reason="user_validation is answered when it arrives")
        if event_type not in mapping.SUBSCRIPTION_TYPES | mapping.TRANSACTION_TYPES:
            return ParseResult(ignored_reason=f"Xsolla notification {event_type!r} is not about subscriptions")
        sub = mapping.notification_subscription(body)
        transactions = ()
        if event_type in mapping.TRANSACTION_TYPES:
            if sub is None:
                sub_id = _subscription_of_transaction(body)
                if sub_id is None:
                    return ParseResult(ignored_reason=f"{event_type} is not for a subscription")
                body = {**body, "subscription": {"subscription_id": sub_id}}
                sub = mapping.notification_subscription(body)
            renewal = event_type == mapping.PAYMENT and _has_charges(sub.subscription_id, body)
            transactions = (mapping.transaction_record(event_type, body, received_at=event.received_at,
                                                       renewal=renewal),)
        if sub is None:
            raise PermanentError(f"{event_type} carries no subscription.subscription_id")
        stored = _stored(sub.subscription_id)

        if self.api_configured() and event_type != mapping.PARTIAL_REFUND:
            data = client.get_subscription(sub.subscription_id)
            revoke = event_type in (mapping.REFUND, mapping.AFS_REJECT)
            snapshot = mapping.snapshot_from_api(
                data, observed_at=mapping.refund_observed_at(event.received_at, stored) if revoke else timezone.now(),
                stored=stored, trial_hint=event_type == mapping.CREATE_SUBSCRIPTION and bool(sub.trial_value),
                environment=Environment.SANDBOX if mapping.is_dry_run(body) else None,
                transactions=transactions, revoke=revoke,
                note=f"{event_type}; state fetched from the subscriptions API")
        else:
            snapshot = mapping.snapshot_from_notification(event_type, body, received_at=event.received_at,
                                                          stored=stored, transactions=transactions)
        return ParseResult(snapshots=[snapshot])

    # --- outbound -----------------------------------------------------------------------------

    def fetch(self, subscription: Subscription) -> Snapshot:
        self.ensure_configured_api()
        data = client.get_subscription(subscription.provider_subscription_id)
        return mapping.snapshot_from_api(data, observed_at=timezone.now(), stored=_stored_of(subscription),
                                         note="re-poll of the subscriptions API")

    def cancel(self, subscription: Subscription) -> Snapshot | None:
        """Cancel at period end: Xsolla's `non_renewing` (access until date_next_charge)."""
        self.ensure_configured_api()
        user_id = _xsolla_user_id(subscription)
        if not user_id:
            raise PermanentError(f"{subscription} has no Xsolla user id to address the subscriptions API with")
        data = client.set_subscription_status(user_id=user_id, subscription_id=subscription.provider_subscription_id,
                                              status="non_renewing")
        return mapping.snapshot_from_api(data, observed_at=timezone.now(), stored=_stored_of(subscription),
                                         note="canceled at period end through the subscriptions API")

    def ensure_configured_api(self) -> None:
        missing = self.missing_settings(for_api=True)
        if missing:
            raise NotConfigured(self.name, missing)


# --- helpers ----------------------------------------------------------------------------------

def dedupe_key(event_type: str, payload: dict, body: bytes) -> str:
    """Xsolla sends no notification id, so the key is built from what the notification is about:

    - payment / refund / afs_reject: the type and `transaction.id` (Xsolla: "if a transaction id repeats,
      return the previous result");
    - partial_refund: also a digest of `payment_details` (one payment can be partially refunded twice);
    - subscription notifications: the type, `subscription_id` and a digest of the whole `subscription`
      object: a repeated delivery carries the same object, two renewals differ in date_next_charge,
      a plan change in plan_id;
    - anything else (user_validation, types we ignore): the type and a digest of the whole body."""
    tx_id = mapping.id_str(mapping.as_dict(payload.get("transaction")).get("id"))
    if event_type in (mapping.PAYMENT, mapping.REFUND, mapping.AFS_REJECT) and tx_id:
        return f"{event_type}:{tx_id}"
    if event_type == mapping.PARTIAL_REFUND and tx_id:
        return f"{event_type}:{tx_id}:{mapping.digest(mapping.as_dict(payload.get('payment_details')))}"
    sub = mapping.as_dict(payload.get("subscription"))
    sub_id = mapping.id_str(sub.get("subscription_id"))
    if event_type in mapping.SUBSCRIPTION_TYPES and sub_id:
        normalized = {**sub, "subscription_id": sub_id, "plan_id": mapping.id_str(sub.get("plan_id"))}
        return f"{event_type}:{sub_id}:{mapping.digest(normalized)}"
    return f"{event_type}:{mapping.digest(payload)}"


def _check_required(event_type: str, payload: dict) -> None:
    """What a notification we act on must carry; without it Xsolla gets a 400 INVALID_PARAMETER."""
    user_id = mapping.id_str(mapping.as_dict(payload.get("user")).get("id"))
    if event_type == mapping.USER_VALIDATION and not user_id:
        raise Rejected("user.id is missing.", code=INVALID_PARAMETER)
    subscription = mapping.as_dict(payload.get("subscription"))
    if event_type in mapping.SUBSCRIPTION_TYPES and not mapping.id_str(subscription.get("subscription_id")):
        raise Rejected("subscription.subscription_id is missing.", code=INVALID_PARAMETER)
    transaction_id = mapping.id_str(mapping.as_dict(payload.get("transaction")).get("id"))
    if event_type in mapping.TRANSACTION_TYPES and not transaction_id:
        raise Rejected("transaction.id is missing.", code=INVALID_PARAMETER)


def _subscriber_exists(user_id: str) -> bool:
    if not user_id:
        return False
    return Subscriber.objects.filter(Q(external_id=user_id) | Q(xsolla_user_id=user_id)).exists()


def _stored(subscription_id: str) -> Stored | None:
    sub = Subscription.objects.filter(provider=Provider.XSOLLA, provider_subscription_id=subscription_id).first()
    return _stored_of(sub) if sub is not None else None


def _stored_of(sub: Subscription) -> Stored:
    return Stored(status=sub.status, expires_at=sub.expires_at, environment=sub.environment,
                  last_event_at=sub.last_event_at)


def _has_charges(subscription_id: str, body: dict) -> bool:
    """A payment for a subscription already charged before is a renewal."""
    tx_id = mapping.id_str(mapping.as_dict(body.get("transaction")).get("id"))
    return Transaction.objects.filter(
        provider=Provider.XSOLLA, subscription__provider_subscription_id=subscription_id,
        kind__in=(TransactionKind.PURCHASE, TransactionKind.RENEWAL)).exclude(provider_transaction_id=tx_id).exists()


def _subscription_of_transaction(body: dict) -> str | None:
    """A refund (or anti-fraud rejection) without `purchase.subscription`: the subscription whose
    payment we recorded under that transaction id, if any."""
    tx_id = mapping.id_str(mapping.as_dict(body.get("transaction")).get("id"))
    return (Transaction.objects.filter(provider=Provider.XSOLLA, provider_transaction_id=tx_id)
            .values_list("subscription__provider_subscription_id", flat=True).first())


def _xsolla_user_id(subscription: Subscription) -> str:
    """The user id Xsolla knows the subscriber by: the stored identity, the state Xsolla last sent, or
    (Xsolla's user.id is the app's user id) the external id."""
    subscriber = subscription.subscriber
    if subscriber is not None and subscriber.xsolla_user_id:
        return subscriber.xsolla_user_id
    raw = subscription.raw_snapshot or {}
    raw_user = mapping.as_dict(raw.get("user")) or mapping.as_dict(mapping.as_dict(raw.get("subscription")).get("user"))
    if raw_user.get("id"):
        return mapping.id_str(raw_user["id"])
    return subscriber.external_id if subscriber is not None else ""

