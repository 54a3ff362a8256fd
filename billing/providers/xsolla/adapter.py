"""The Xsolla adapter: webhooks, user validation and the subscriptions API.

- authenticate: auth.py (the signature, then a JSON object with a `notification_type`).
- user_validation is answered synchronously (204 / 400 INVALID_USER) and stored for the audit only.
- parse, through HANDLERS by notification type: with the subscriptions API configured, a notification
  about a subscription is a trigger: the state comes from `GET subscription` (observed now). Without
  it, the notification's own content is mapped (observed at its arrival). Money facts (payment,
  refunds) come from the webhook either way.
- fetch / cancel: the subscriptions API (client.py)."""

from __future__ import annotations

from collections.abc import Mapping

from django.utils import timezone

from billing.models import Subscription
from billing.providers.base import Answer, InboundEvent, ParseResult, PermanentError, ProviderAdapter, VerifiedEvent
from billing.snapshots import Environment, Provider, Snapshot
from billing.storable import text_problem

from . import auth, client, mapping, selectors
from .mapping import XsollaSubscription

# --- Handlers (notification type → ParseResult) -------------------------------------------------


def _answered_on_arrival(event: InboundEvent) -> ParseResult:
    return ParseResult(ignored_reason="user_validation is answered when it arrives")


def _subscription_changed(event: InboundEvent) -> ParseResult:
    """create / update / non_renewal / cancel_subscription."""
    sub = mapping.notification_subscription(event.payload)
    if sub is None:
        raise PermanentError(f"{event.event_type} carries no subscription.subscription_id")
    return _state(event, event.payload, sub)


def _money_moved(event: InboundEvent) -> ParseResult:
    """payment / refund / partial_refund / afs_reject: a Transaction, and the subscription's state."""
    body = event.payload
    sub = mapping.notification_subscription(body)
    tx_id = mapping.transaction_id_of(body)
    if sub is None:
        sub_id = selectors.transaction_subscription_id(tx_id)
        if sub_id is None:
            return ParseResult(ignored_reason=f"{event.event_type} is not for a subscription")
        body = {**body, "subscription": {"subscription_id": sub_id}}
        sub = mapping.notification_subscription(body)
    renewal = (event.event_type == mapping.PAYMENT
               and selectors.subscription_charged_before(sub.subscription_id, transaction_id=tx_id))
    record = mapping.transaction_record(event.event_type, body, received_at=event.received_at, renewal=renewal)
    return _state(event, body, sub, transactions=(record,))


def _state(event: InboundEvent, body: dict, sub: XsollaSubscription, transactions: tuple = ()) -> ParseResult:
    """The subscription's state after the notification: read from the subscriptions API when it is
    configured (a partial refund changes no state: nothing to ask), else mapped from the body."""
    stored = selectors.subscription_stored(sub.subscription_id)
    event_type = event.event_type
    if not client.is_configured() or event_type == mapping.PARTIAL_REFUND:
        return ParseResult(snapshots=[mapping.notification_snapshot(
            event_type, body, received_at=event.received_at, stored=stored, transactions=transactions)])
    data = client.subscription_get(sub.subscription_id)
    revoke = event_type in (mapping.REFUND, mapping.AFS_REJECT)
    snapshot = mapping.subscription_snapshot(
        data, observed_at=mapping.refund_observed_at(event.received_at, stored) if revoke else timezone.now(),
        stored=stored, trial_hint=event_type == mapping.CREATE_SUBSCRIPTION and bool(sub.trial_value),
        environment=Environment.SANDBOX if mapping.is_dry_run(body) else None,
        transactions=transactions, revoke=revoke, note=f"{event_type}; state fetched from the subscriptions API")
    return ParseResult(snapshots=[snapshot])


class XsollaAdapter(ProviderAdapter):
    name = Provider.XSOLLA
    dialect = auth.XsollaDialect()
    required_settings = ("XSOLLA_WEBHOOK_SECRET",)
    api_settings = client.API_SETTINGS
    # Authentic types not listed here (order_paid, user_search, ...) are ignored.
    HANDLERS = {
        mapping.USER_VALIDATION: _answered_on_arrival,
        **dict.fromkeys(mapping.SUBSCRIPTION_TYPES, _subscription_changed),
        **dict.fromkeys(mapping.TRANSACTION_TYPES, _money_moved),
    }

    # --- inbound ------------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
        return auth.webhook_authenticate(headers, body, query)

    def decode(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        return auth.webhook_decode(body)

    def synchronous_answer(self, event: VerifiedEvent) -> Answer | None:
        """user_validation: does the user exist here? Nothing is written either way."""
        if event.event_type != mapping.USER_VALIDATION:
            return None
        user_id = mapping.user_id_of(event.payload)
        if not text_problem(user_id) and selectors.subscriber_exists(user_id):
            return self.dialect.success(duplicate=False)
        return self.dialect.error(status=400, code=auth.INVALID_USER, message=f"Unknown user {user_id!r}.")

    # --- outbound -----------------------------------------------------------------------------

    def fetch(self, subscription: Subscription) -> Snapshot:
        self.ensure_configured(for_api=True)
        data = client.subscription_get(subscription.provider_subscription_id)
        return mapping.subscription_snapshot(data, observed_at=timezone.now(), stored=selectors.stored_of(subscription),
                                             note="re-poll of the subscriptions API")

    def cancel(self, subscription: Subscription) -> Snapshot | None:
        """Cancel at period end: Xsolla's `non_renewing` (access until date_next_charge)."""
        self.ensure_configured(for_api=True)
        user_id = selectors.subscription_user_id(subscription)
        if not user_id:
            raise PermanentError(f"{subscription} has no Xsolla user id to address the subscriptions API with")
        data = client.subscription_status_update(user_id=user_id, subscription_id=subscription.provider_subscription_id,
                                                 status="non_renewing")
        return mapping.subscription_snapshot(data, observed_at=timezone.now(), stored=selectors.stored_of(subscription),
                                             note="canceled at period end through the subscriptions API")
