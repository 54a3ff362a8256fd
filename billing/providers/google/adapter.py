"""GoogleAdapter: Pub/Sub push → verified event; event → subscriptionsv2.get → Snapshot; verify,
re-poll, cancel; staff actions (revoke with refund, defer) in admin.py.

Who the user is (in this order): a subscriber already carrying the purchase's obfuscated account id;
else the obfuscated account id taken as the app's user id (apps are asked to put their user id there,
see docs/providers/google.md); else the owner of the token this one replaces (linkedPurchaseToken);
else, for a resubscribe from the Play subscription center, the owner of the expired token; else the
link we already have; else an orphan for support to link — or, with GOOGLE_UNKNOWN_TOKEN_POLICY=ignore,
a token never seen here that nobody here claims is recorded as ignored (another deployment's purchase
on a shared topic)."""

from collections.abc import Mapping

from django.conf import settings
from django.utils import timezone

from billing.providers.base import (
    InboundEvent,
    InvalidPurchase,
    ParseResult,
    PermanentError,
    ProviderAdapter,
    VerifiedEvent,
)
from billing.snapshots import Provider, Snapshot
from billing.statuses import Status

from . import acknowledgement, client, mapping, notifications, selectors
from .push_auth import authenticate_push

POLICY_IGNORE = "ignore"
POLICY_ORPHAN = "orphan"


class GoogleAdapter(ProviderAdapter):
    name = Provider.GOOGLE
    required_settings = ("GOOGLE_PLAY_PACKAGE_NAME",)
    api_settings = ("GOOGLE_SERVICE_ACCOUNT_FILE",)

    # --- configuration ----------------------------------------------------------------------
    def missing_settings(self, *, for_api: bool = False) -> list[str]:
        missing = super().missing_settings(for_api=for_api)
        if not settings.GOOGLE_PUBSUB_AUDIENCE and not settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN:
            missing.append("GOOGLE_PUBSUB_AUDIENCE (or GOOGLE_PUBSUB_VERIFICATION_TOKEN)")
        if settings.GOOGLE_PUBSUB_AUDIENCE and not settings.GOOGLE_PUBSUB_SERVICE_ACCOUNT:
            missing.append("GOOGLE_PUBSUB_SERVICE_ACCOUNT")
        if settings.GOOGLE_UNKNOWN_TOKEN_POLICY not in (POLICY_IGNORE, POLICY_ORPHAN):
            missing.append("GOOGLE_UNKNOWN_TOKEN_POLICY (ignore or orphan)")
        return missing

    # --- inbound ------------------------------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
        authenticate_push(headers, query)  # before reading anything else of the request
        envelope = notifications.parse_envelope(body)
        meta = {k: envelope[k] for k in ("message_id", "publish_time", "subscription", "attributes",
                                         "delivery_attempt")}
        if "undecodable" in envelope:
            return VerifiedEvent(dedupe_key=envelope["message_id"], event_type=notifications.UNDECODABLE,
                                 payload={**meta, "undecodable": envelope["undecodable"]})
        notification = envelope["notification"]
        return VerifiedEvent(
            dedupe_key=envelope["message_id"], event_type=notifications.event_type(notification),
            payload={**meta, "notification": notification}, occurred_at=notifications.event_time(notification),
            store_ids=notifications.store_ids(notification))

    def parse(self, event: InboundEvent) -> ParseResult:
        payload = event.payload or {}
        if "undecodable" in payload:
            return ParseResult(ignored_reason=payload["undecodable"])
        notification = payload.get("notification") or {}
        package = notification.get("packageName")
        if package != settings.GOOGLE_PLAY_PACKAGE_NAME:
            return ParseResult(ignored_reason=f"package {package!r} is not this deployment's "
                                              f"({settings.GOOGLE_PLAY_PACKAGE_NAME!r})")
        kind = notifications.event_type(notification)
        event_time = notifications.event_time(notification)
        if kind == notifications.TEST:
            return ParseResult(ignored_reason="test notification from the Play Console")
        if kind == notifications.ONE_TIME_PRODUCT:
            inner = notification["oneTimeProductNotification"] or {}
            return ParseResult(ignored_reason=f"one-time product {inner.get('sku')!r}: not a subscription")
        if kind == notifications.VOIDED_PURCHASE:
            return self._voided(notification["voidedPurchaseNotification"] or {}, event_time)
        if kind == notifications.UNKNOWN:
            keys = sorted(k for k in notification if k not in ("version", "packageName", "eventTimeMillis"))
            return ParseResult(ignored_reason=f"notification kind not handled: {', '.join(keys) or 'none'}")
        return self._subscription(notification["subscriptionNotification"] or {}, event_time)

    def _subscription(self, inner: dict, event_time) -> ParseResult:
        token = inner.get("purchaseToken")
        if not token:
            return ParseResult(ignored_reason="subscription notification without a purchase token")
        number = inner.get("notificationType")
        purchase = client.subscription_get(token)  # the notification carries no state
        known = selectors.known_token(token)
        snapshot = self.snapshot_for(token, purchase, known_status=known.status if known else None,
                                     revoked=number == notifications.SUBSCRIPTION_REVOKED, event_time=event_time,
                                     enforce_policy=True)
        if snapshot is None:
            return ParseResult(ignored_reason=f"purchase token never seen here and claimed by no user here "
                                              f"(GOOGLE_UNKNOWN_TOKEN_POLICY={POLICY_IGNORE}): another "
                                              "deployment's purchase")
        snapshots = [snapshot]
        linked = purchase.get("linkedPurchaseToken")
        if number == notifications.SUBSCRIPTION_PENDING_PURCHASE_CANCELED and linked and \
                selectors.known_token(linked) is not None:
            # A pending plan change was abandoned: the old subscription goes on; re-read it.
            old = selectors.known_token(linked)
            snapshots.append(self.snapshot_for(linked, client.subscription_get(linked), known_status=old.status))
        return self._result(snapshots[0], purchase, snapshots)

    def _voided(self, inner: dict, event_time) -> ParseResult:
        token, order_id = inner.get("purchaseToken"), inner.get("orderId")
        if inner.get("productType") != notifications.PRODUCT_TYPE_SUBSCRIPTION:
            return ParseResult(ignored_reason=f"voided one-time purchase {order_id!r}: not a subscription")
        if not token:
            return ParseResult(ignored_reason="voided purchase without a purchase token")
        known = selectors.known_token(token)
        now = timezone.now()
        refund = None
        if order_id:
            amount, currency = selectors.order_amount(order_id)
            full = inner.get("refundType") == 1
            refund = mapping.refund_transaction(order_id=order_id, occurred_at=event_time or now,
                                                amount_minor=amount if full else None, currency=currency,
                                                refund_type=inner.get("refundType"))
        extra = (refund,) if refund else ()
        try:
            purchase = client.subscription_get(token)
        except client.TokenNotFound:
            # Google no longer knows the token: what the notification says is all there is.
            if known is None and settings.GOOGLE_UNKNOWN_TOKEN_POLICY == POLICY_IGNORE:
                return ParseResult(ignored_reason="voided purchase of a token never seen here")
            return ParseResult(snapshots=[Snapshot(
                provider=Provider.GOOGLE, provider_subscription_id=token, status=Status.REVOKED,
                observed_at=event_time or now, ended_at=event_time or now, transactions=extra,
                note="voided purchase (refund or chargeback)")])
        # A voided order ends access unless Google still reports the subscription live (e.g. only an
        # earlier renewal was refunded): then only the refund is recorded.
        snapshot = self.snapshot_for(token, purchase, known_status=known.status if known else None, revoked=True,
                                     event_time=event_time, enforce_policy=True, extra_transactions=extra)
        if snapshot is None:
            return ParseResult(ignored_reason="voided purchase of a token never seen here and claimed by no user")
        return ParseResult(snapshots=[snapshot])

    def _result(self, snapshot: Snapshot, purchase: dict, snapshots: list[Snapshot]) -> ParseResult:
        pending = acknowledgement.pending_for(snapshot, purchase)
        return ParseResult(snapshots=snapshots, after_apply=[pending] if pending else [])

    # --- mapping with the user link -----------------------------------------------------------
    def snapshot_for(self, token: str, purchase: dict, *, known_status: str | None, observed_at=None,
                     revoked: bool = False, event_time=None, enforce_policy: bool = False,
                     extra_transactions=()) -> Snapshot | None:
        """The snapshot for a purchase just read from Google, with the user link decided. None: an
        unseen token nobody claims, under the "ignore" policy (only when `enforce_policy`)."""
        who = self._who(purchase, known=known_status is not None, enforce_policy=enforce_policy)
        if who is None:
            return None
        return mapping.to_snapshot(token, purchase, observed_at=observed_at or timezone.now(), who=who,
                                   revoked=revoked or known_status == Status.REVOKED, event_time=event_time,
                                   extra_transactions=tuple(extra_transactions))

    def _who(self, purchase: dict, *, known: bool, enforce_policy: bool) -> mapping.Who | None:
        ignore_unknown = enforce_policy and settings.GOOGLE_UNKNOWN_TOKEN_POLICY == POLICY_IGNORE
        expired_token, expired_account = mapping.out_of_app_context(purchase)
        for account in (mapping.obfuscated_account_id(purchase), expired_account):
            if not account:
                continue
            found = selectors.subscriber_with_account_id(account)
            if found is not None and found.google_obfuscated_account_id == account:
                return mapping.Who(identity_value=account)  # apply_snapshot finds them by it
            if found is not None or known or not ignore_unknown:
                return mapping.Who(user_id=account, identity_value=account)
        for token in (purchase.get("linkedPurchaseToken"), expired_token):
            owner = selectors.owner_of_token(token)
            if owner:
                return mapping.Who(user_id=owner)
        if not known and ignore_unknown:
            return None
        return mapping.Who()  # keep the link we have, or an orphan for support

    # --- outbound -----------------------------------------------------------------------------
    def fetch(self, subscription) -> Snapshot:
        purchase = client.subscription_get(subscription.provider_subscription_id)
        return self.snapshot_for(subscription.provider_subscription_id, purchase, known_status=subscription.status)

    def verify(self, purchase: Mapping, *, user_id: str | None) -> ParseResult:
        token = purchase.get("purchase_token")
        product = purchase.get("product_id")
        if not isinstance(token, str) or not token.strip():
            raise InvalidPurchase("purchase_token is required (the token Google Play Billing returned).",
                                  code="invalid_request")
        if product is not None and not isinstance(product, str):
            raise InvalidPurchase("product_id must be a string.", code="invalid_request")
        token = token.strip()
        try:
            state = client.subscription_get(token)
        except client.TokenNotFound as exc:
            raise InvalidPurchase(f"Google Play does not know this purchase token ({exc.status}).") from exc
        except PermanentError as exc:
            raise InvalidPurchase(f"Google Play rejected the purchase token: {exc}") from exc
        if product and product not in (mapping.product_id(state), mapping.store_product_id(state)):
            raise InvalidPurchase(f"The purchase is for {mapping.product_id(state)!r}, not {product!r}.",
                                  code="product_mismatch")
        known = selectors.known_token(token)
        snapshot = self.snapshot_for(token, state, known_status=known.status if known else None)
        return self._result(snapshot, state, [snapshot])

    def cancel(self, subscription) -> Snapshot:
        """Stop renewal at Google (the user keeps access until expiry); the new state is returned."""
        client.subscription_cancel(subscription.provider_subscription_id)
        return self.fetch(subscription)

