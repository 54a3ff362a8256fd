"""The App Store adapter: Server Notifications V2 in (auth.py verifies, HANDLERS route on the
notificationType, mapping.py reads), the App Store Server API out (client.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.utils import timezone

from billing.providers.base import (
    Handler,
    InboundEvent,
    InvalidPurchase,
    NotSupported,
    ParseResult,
    PermanentError,
    ProviderAdapter,
    StoreUnavailable,
    TransientError,
    VerifiedEvent,
)
from billing.providers.common import SubscriptionNotFound
from billing.snapshots import Snapshot

from . import auth, client, mapping, services

if TYPE_CHECKING:
    from billing.models import Subscription

HISTORY_DAYS = 180  # Apple keeps the notification history this long

MANAGED_IN_STORE = ("App Store subscriptions are managed by the user in the App Store: Settings > Apple ID > "
                    "Subscriptions (or App Store > account > Subscriptions).")


# --- Handlers: a verified notification (as auth.verified_event stored it) → what it means -------

def _subscription_notification(event: InboundEvent) -> ParseResult:
    """A type about an auto-renewable subscription's state: the verified state, applied."""
    problem = mapping.subscription_notification_problem(event.payload)
    if problem:
        return ParseResult(ignored_reason=problem)
    return ParseResult(snapshots=[mapping.notification_snapshot(event.payload)])


def _test_notification(event: InboundEvent) -> ParseResult:
    return ParseResult(ignored_reason="test notification (no effect)")


def _consumption_request(event: InboundEvent) -> ParseResult:
    """No state change. Staff answer from the event's link (admin.py); with APPLE_CONSUMPTION_AUTO_ANSWER
    the answer goes out after the event is stored (services.consumption_auto_answer)."""
    follow_ups = [partial(services.consumption_auto_answer, event.payload)] \
        if settings.APPLE_CONSUMPTION_AUTO_ANSWER else []
    return ParseResult(ignored_reason=mapping.consumption_request_reason(event.payload), after_apply=follow_ups)


def _renewal_extension(event: InboundEvent) -> ParseResult:
    return ParseResult(ignored_reason=mapping.renewal_extension_reason(event.payload))


def _not_a_subscription(event: InboundEvent) -> ParseResult:
    return ParseResult(ignored_reason=mapping.not_a_subscription_reason(event.payload))


def _nested_verified(event: InboundEvent) -> InboundEvent:
    """The event with its nested signed transaction and renewal info verified in full, before anything is
    applied. The answer path verified the notification (whose signature covers their bytes) and checked
    their bundle id and environment, not their own signatures (auth.verify_notification): a nested JWS
    that does not verify fails the event with the reason (visible in the admin, counted as failed), or is
    retried when the revocation check could not reach Apple."""
    try:
        transaction, renewal = auth.nested_verified(event.body)
    except auth.NotTrusted as exc:
        raise PermanentError(f"The notification verified when it arrived, but its nested signed data does not: "
                             f"{exc}") from None
    except auth.RetryLater as exc:
        raise TransientError(str(exc)) from exc
    return replace(event, payload={**event.payload, "transaction": transaction, "renewal": renewal})


# --- Helpers of verify and fetch ---------------------------------------------------------------

def _environments_to_try() -> list[str]:
    """Production first, then the sandbox (Apple's advice: App Review buys in the sandbox)."""
    primary = settings.APPLE_ENVIRONMENT
    return [primary, "Sandbox"] if primary == "Production" else [primary]


def _purchase_transaction(purchase: Mapping) -> tuple[str, list[str]]:
    """The transaction id a purchase sent for verification names, and the App Store environments to
    ask about it, in order. A signed transaction is verified here first: a forged one never reaches Apple."""
    given = [k for k in ("signed_transaction", "transaction_id", "receipt") if purchase.get(k)]
    if len(given) != 1:
        raise InvalidPurchase("Send exactly one of signed_transaction, transaction_id or receipt.", code="invalid")
    environments = _environments_to_try()
    if given == ["signed_transaction"]:
        try:
            transaction = auth.verify_transaction(str(purchase["signed_transaction"]))
        except auth.NotTrusted as exc:
            raise InvalidPurchase(str(exc), code="invalid_signed_transaction") from None
        except auth.RetryLater as exc:
            raise StoreUnavailable(str(exc)) from exc
        transaction_id = str(transaction.get("originalTransactionId") or transaction.get("transactionId") or "")
        environments = [transaction.get("environment")]
    elif given == ["receipt"]:
        try:
            transaction_id = mapping.receipt_transaction_id(str(purchase["receipt"]))
        except ValueError:
            raise InvalidPurchase("The receipt is not a base64-encoded App Store receipt (PKCS#7).",
                                  code="invalid_receipt") from None
        if not transaction_id:
            raise InvalidPurchase("The receipt holds no in-app purchase.", code="receipt_without_purchase")
    else:
        transaction_id = str(purchase["transaction_id"]).strip()
    if not transaction_id.isdigit():
        raise InvalidPurchase(f"{transaction_id!r} is not an App Store transaction id.", code="invalid_transaction_id")
    # A sandbox purchase is looked up and recorded like any other; whether it grants access is the
    # write path's rule (billing/sandbox_purchases.py), not a refusal here.
    return transaction_id, environments


def _subscription_snapshots(transaction_id: str, apple_environment: str) -> list[Snapshot]:
    """The App Store's state of every subscription of the account that made this transaction: one
    verified snapshot per auto-renewable subscription (originalTransactionId)."""
    response = client.subscription_get(transaction_id, apple_environment=apple_environment)
    return mapping.status_snapshots(auth.verified_statuses(response, apple_environment=apple_environment),
                                    environment=auth.environment_of(apple_environment))


# --- The adapter ---------------------------------------------------------------------------------

class AppleAdapter(ProviderAdapter):
    name = "apple"
    required_settings = ("APPLE_BUNDLE_ID", "APPLE_ROOT_CERTIFICATES")
    api_settings = ("APPLE_KEY_ID", "APPLE_ISSUER_ID", "APPLE_PRIVATE_KEY_FILE")
    # notificationType (without its subtype: `handler_key`) → handler.
    HANDLERS: ClassVar[Mapping[str, Handler]] = {
        **dict.fromkeys(mapping.SUBSCRIPTION_TYPES, _subscription_notification),
        **dict.fromkeys(mapping.NOT_SUBSCRIPTION_TYPES, _not_a_subscription),
        "TEST": _test_notification,
        "CONSUMPTION_REQUEST": _consumption_request,
        "RENEWAL_EXTENSION": _renewal_extension,
    }

    def checks(self) -> list:
        return auth.system_checks()

    # --- inbound ------------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
        return auth.webhook_authenticate(headers, body, query)

    def decode(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        """Verified again: the signature is in the body and stays checkable (as of its signedDate)."""
        return auth.webhook_authenticate(headers, body, {})

    def parse(self, event: InboundEvent) -> ParseResult:
        return super().parse(_nested_verified(event))

    def handler_key(self, event: InboundEvent) -> str:
        # The stored type is "TYPE/SUBTYPE"; the subtype never changes which handler applies.
        return event.event_type.partition("/")[0]

    def unhandled(self, event: InboundEvent) -> ParseResult:
        # A type Apple adds after this code is named as unknown (not as one that "does not change
        # subscription state": it may well, and support should see that we did not know it).
        return ParseResult(ignored_reason=mapping.unknown_type_reason(event.payload))

    def missed_notifications(self, *, since: datetime, until: datetime, only_failures: bool,
                             environment: str | None = None) -> Iterator[bytes | None]:
        """The App Store's notification history (get_notification_history, page by page), each entry as
        the body Apple POSTs: {"signedPayload": …}. `environment`: production or sandbox (default:
        APPLE_ENVIRONMENT's)."""
        self.ensure_configured(for_api=True)
        if since < timezone.now() - timedelta(days=HISTORY_DAYS):
            oldest = (timezone.now() - timedelta(days=HISTORY_DAYS)).date().isoformat()
            raise ValueError(f"Apple keeps the notification history for {HISTORY_DAYS} days: start after {oldest}.")
        if environment is None:
            environment = auth.environment_of(settings.APPLE_ENVIRONMENT)
        apple_environment = auth.apple_environment_of(environment)
        token = None
        while True:
            page = client.notification_history_get(since=since, until=until, only_failures=only_failures,
                                                   pagination_token=token, apple_environment=apple_environment)
            for item in page.notificationHistory or []:
                yield mapping.notification_body(item.signedPayload)
            if not page.hasMore or not page.paginationToken:
                return
            token = page.paginationToken

    # --- outbound -----------------------------------------------------------------------------

    def verify(self, purchase: Mapping, *, user_id: str | None) -> ParseResult:
        """A StoreKit 2 signed transaction (verified here, then confirmed), a transaction id, or a legacy
        app receipt (its transaction id read with the library's ReceiptUtility) → the App Store's current
        state of every subscription of that Apple account for this app."""
        self.ensure_configured(for_api=True)
        transaction_id, environments = _purchase_transaction(purchase)
        # Only a signed transaction proves the caller's device holds it; an id or an (unverified) legacy
        # receipt only names a purchase, which appAccountToken must then tie to the caller.
        signed = bool(purchase.get("signed_transaction"))
        for apple_environment in environments:
            try:
                snapshots = _subscription_snapshots(transaction_id, apple_environment)
            except SubscriptionNotFound:
                continue
            if transaction_id in {s.provider_subscription_id for s in snapshots}:
                # The purchase asked about first: the API answers with its subscription.
                snapshots.sort(key=lambda s: s.provider_subscription_id != transaction_id)
            return ParseResult(snapshots=snapshots, possession_proven=signed,
                               ignored_reason="" if snapshots else "no auto-renewable subscription in this purchase")
        where = " or ".join(environments)
        raise InvalidPurchase(f"The App Store ({where}) knows no transaction {transaction_id}.",
                              code="unknown_transaction")

    def fetch(self, subscription: Subscription) -> Snapshot:
        self.ensure_configured(for_api=True)
        subscription_id = subscription.provider_subscription_id
        try:
            snapshots = _subscription_snapshots(subscription_id, auth.apple_environment_of(subscription.environment))
        except SubscriptionNotFound as exc:
            raise SubscriptionNotFound(f"The App Store knows no subscription {subscription_id}: {exc}",
                                       status=exc.status) from exc
        for snapshot in snapshots:
            if snapshot.provider_subscription_id == subscription_id:
                return snapshot
        raise PermanentError(f"The App Store returned no state for {subscription_id}.")

    def cancel(self, subscription: Subscription) -> Snapshot | None:
        raise NotSupported(f"This subscription cannot be canceled by the server: {MANAGED_IN_STORE}")

    def change_plan(self, subscription: Subscription, *, price_id: str) -> Snapshot | None:
        raise NotSupported(f"The plan cannot be changed by the server: {MANAGED_IN_STORE}")
