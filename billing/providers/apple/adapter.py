"""The App Store adapter: Server Notifications V2 in, App Store Server API out."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from appstoreserverlibrary.models.NotificationHistoryRequest import NotificationHistoryRequest
from appstoreserverlibrary.receipt_utility import ReceiptUtility
from django.conf import settings
from django.utils import timezone

from billing.providers.base import (
    InboundEvent,
    InvalidPurchase,
    NotConfigured,
    NotSupported,
    ParseResult,
    PermanentError,
    ProviderAdapter,
    Rejected,
    StoreUnavailable,
    TransientError,
    VerifiedEvent,
)
from billing.snapshots import Environment, Snapshot

from . import mapping, verification
from .client import TransactionNotFound, api_call

if TYPE_CHECKING:
    from billing.models import Subscription

HISTORY_DAYS = 180  # Apple keeps the notification history this long

MANAGED_IN_STORE = ("App Store subscriptions are managed by the user in the App Store: Settings > Apple ID > "
                    "Subscriptions (or App Store > account > Subscriptions).")


class AppleAdapter(ProviderAdapter):
    name = "apple"
    required_settings = ("APPLE_BUNDLE_ID", "APPLE_ROOT_CERTIFICATES")
    api_settings = ("APPLE_KEY_ID", "APPLE_ISSUER_ID", "APPLE_PRIVATE_KEY_FILE")

    # --- inbound ------------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
        try:
            document = json.loads(body)
            signed_payload = document["signedPayload"]
            if not isinstance(signed_payload, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise Rejected('The body must be JSON {"signedPayload": "<JWS>"} (App Store Server Notifications V2).',
                           code="malformed") from None
        return self.verified_event(signed_payload)

    def verified_event(self, signed_payload: str) -> VerifiedEvent:
        """A notification's signedPayload, verified (with its nested JWS), as the event to store."""
        try:
            notification = verification.verify_notification(signed_payload)
        except verification.NotTrusted as exc:
            raise Rejected(str(exc), code=exc.code) from None
        except verification.RetryLater as exc:
            raise TransientError(str(exc)) from exc
        except NotConfigured as exc:  # fixable by us: answer 5xx so Apple retries once it is fixed
            raise Rejected(str(exc), status=503, code="not_configured") from None
        claims = notification.claims
        uuid = claims.get("notificationUUID")
        if not uuid:
            raise Rejected("The notification has no notificationUUID.", code="malformed")
        kind, subtype = claims.get("notificationType") or "", claims.get("subtype")
        ids = []
        for part in (notification.transaction or {}, notification.renewal or {}):
            for key in ("originalTransactionId", "transactionId", "webOrderLineItemId", "appAccountToken"):
                if part.get(key) and str(part[key]) not in ids:
                    ids.append(str(part[key]))
        return VerifiedEvent(
            dedupe_key=str(uuid),
            event_type=f"{kind}/{subtype}" if subtype else kind,
            payload={"notification": claims, "transaction": notification.transaction,
                     "renewal": notification.renewal, "environment": notification.environment,
                     "apple_environment": notification.apple_environment},
            occurred_at=mapping.ms_to_datetime(claims.get("signedDate")),
            store_ids=tuple(ids),
            environment=notification.environment,
        )

    def parse(self, event: InboundEvent) -> ParseResult:
        return mapping.notification_result(event.payload,
                                           sandbox_grants_access=verification.sandbox_grants_access())

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
            environment = Environment.PRODUCTION if settings.APPLE_ENVIRONMENT == "Production" else Environment.SANDBOX
        apple_environment = "Production" if environment == Environment.PRODUCTION else "Sandbox"
        request = NotificationHistoryRequest(startDate=int(since.timestamp() * 1000),
                                             endDate=int(until.timestamp() * 1000),
                                             onlyFailures=True if only_failures else None)
        token = None
        while True:
            page = api_call(apple_environment, "get_notification_history", token, request)
            for item in page.notificationHistory or []:
                yield json.dumps({"signedPayload": item.signedPayload}).encode() if item.signedPayload else None
            if not page.hasMore or not page.paginationToken:
                return
            token = page.paginationToken

    # --- outbound -----------------------------------------------------------------------------

    def verify(self, purchase: Mapping, *, user_id: str | None) -> ParseResult:
        """A StoreKit 2 signed transaction (verified here, then confirmed), a transaction id, or a legacy
        app receipt (its transaction id read with the library's ReceiptUtility) → the App Store's current
        state of every subscription of that Apple account for this app."""
        self.ensure_configured(for_api=True)
        given = [k for k in ("signed_transaction", "transaction_id", "receipt") if purchase.get(k)]
        if len(given) != 1:
            raise InvalidPurchase("Send exactly one of signed_transaction, transaction_id or receipt.",
                                  code="invalid")
        environments = self._environments_to_try()
        if given == ["signed_transaction"]:
            try:
                transaction = verification.verify_transaction(str(purchase["signed_transaction"]))
            except verification.NotTrusted as exc:
                raise InvalidPurchase(str(exc), code="invalid_signed_transaction") from None
            except verification.RetryLater as exc:
                raise StoreUnavailable(str(exc)) from exc
            transaction_id = str(transaction.get("originalTransactionId") or transaction.get("transactionId") or "")
            environments = [transaction.get("environment")]
        elif given == ["receipt"]:
            try:
                transaction_id = ReceiptUtility().extract_transaction_id_from_app_receipt(str(purchase["receipt"]))
            except ValueError:
                raise InvalidPurchase("The receipt is not a base64-encoded App Store receipt (PKCS#7).",
                                      code="invalid_receipt") from None
            if not transaction_id:
                raise InvalidPurchase("The receipt holds no in-app purchase.", code="receipt_without_purchase")
        else:
            transaction_id = str(purchase["transaction_id"]).strip()
        if not transaction_id.isdigit():
            raise InvalidPurchase(f"{transaction_id!r} is not an App Store transaction id.",
                                  code="invalid_transaction_id")
        if any(env != "Production" for env in environments) and not verification.sandbox_grants_access():
            environments = [env for env in environments if env == "Production"]
            if not environments:
                raise InvalidPurchase("Sandbox purchases do not grant access on this deployment.",
                                      code="sandbox_not_allowed")
        for apple_environment in environments:
            try:
                snapshots = self._statuses(transaction_id, apple_environment)
            except TransactionNotFound:
                continue
            if transaction_id in {s.provider_subscription_id for s in snapshots}:
                # The purchase asked about first: the API answers with its subscription.
                snapshots.sort(key=lambda s: s.provider_subscription_id != transaction_id)
            return ParseResult(snapshots=snapshots,
                               ignored_reason="" if snapshots else "no auto-renewable subscription in this purchase")
        where = " or ".join(environments)
        raise InvalidPurchase(f"The App Store ({where}) knows no transaction {transaction_id}.",
                              code="unknown_transaction")

    def fetch(self, subscription: Subscription) -> Snapshot:
        self.ensure_configured(for_api=True)
        apple_environment = "Production" if subscription.environment == Environment.PRODUCTION else "Sandbox"
        try:
            snapshots = self._statuses(subscription.provider_subscription_id, apple_environment)
        except TransactionNotFound as exc:
            raise PermanentError(f"The App Store knows no subscription {subscription.provider_subscription_id}: "
                                 f"{exc}") from exc
        for snapshot in snapshots:
            if snapshot.provider_subscription_id == subscription.provider_subscription_id:
                return snapshot
        raise PermanentError(f"The App Store returned no state for {subscription.provider_subscription_id}.")

    def cancel(self, subscription: Subscription) -> Snapshot | None:
        raise NotSupported(f"This subscription cannot be canceled by the server: {MANAGED_IN_STORE}")

    def change_plan(self, subscription: Subscription, *, price_id: str) -> Snapshot | None:
        raise NotSupported(f"The plan cannot be changed by the server: {MANAGED_IN_STORE}")

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _environments_to_try() -> list[str]:
        """Production first, then the sandbox (Apple's advice: App Review buys in the sandbox)."""
        primary = settings.APPLE_ENVIRONMENT
        return [primary, "Sandbox"] if primary == "Production" else [primary]

    def _statuses(self, transaction_id: str, apple_environment: str) -> list[Snapshot]:
        """get_all_subscription_statuses → one verified snapshot per subscription (originalTransactionId)."""
        response = api_call(apple_environment, "get_all_subscription_statuses", transaction_id)
        environment = verification.environment_of(apple_environment)
        snapshots: list[Snapshot] = []
        for group in response.data or []:
            for item in group.lastTransactions or []:
                if not item.signedTransactionInfo:
                    continue
                try:
                    transaction = verification.verify_transaction(item.signedTransactionInfo,
                                                                  apple_environment=apple_environment)
                    renewal = (verification.verify_renewal(item.signedRenewalInfo, apple_environment=apple_environment)
                               if item.signedRenewalInfo else None)
                except verification.NotTrusted as exc:
                    # Our own call to Apple answered with data that does not verify: never trust it.
                    raise StoreUnavailable(f"App Store Server API answer not verified: {exc}") from exc
                except verification.RetryLater as exc:
                    raise StoreUnavailable(str(exc)) from exc
                if transaction.get("type") not in (None, mapping.AUTO_RENEWABLE):
                    continue
                signed = [mapping.ms_to_datetime(d.get("signedDate")) for d in (transaction, renewal or {})]
                observed_at = max((d for d in signed if d is not None), default=datetime.now(UTC))
                snapshots.append(mapping.subscription_snapshot(
                    transaction=transaction, renewal=renewal, observed_at=observed_at, environment=environment,
                    status_code=item.rawStatus, note="App Store Server API: all subscription statuses"))
        return snapshots
