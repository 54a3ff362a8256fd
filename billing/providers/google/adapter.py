"""GoogleAdapter: Pub/Sub push → verified event (auth.py); event → subscriptionsv2.get → Snapshot through
the HANDLERS table; verify, re-poll, cancel. Staff actions (revoke with refund, defer) are in admin.py
and services.py; who bought a purchase is decided in selectors.purchase_buyer.

With GOOGLE_UNKNOWN_TOKEN_POLICY=ignore, a notification of a token never seen here that nobody here
claims is recorded as ignored (another deployment's purchase on a shared topic); with `orphan` it is
kept for support to link."""

import logging
from collections.abc import Mapping
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from billing.providers.base import (
    InboundEvent,
    InvalidPurchase,
    ParseResult,
    PermanentError,
    ProviderAdapter,
    TransientError,
    VerifiedEvent,
)
from billing.providers.common import SubscriptionNotFound
from billing.snapshots import Provider, Snapshot

from . import auth, client, mapping, selectors, services

logger = logging.getLogger(__name__)

POLICY_IGNORE = "ignore"
# A voided order the Voided Purchases API does not list (yet) is looked for again this long after the
# notification reached us (the event is retried meanwhile), then ignored: nothing is recorded.
VOID_CONFIRMATION_WINDOW = timedelta(hours=1)
MAX_VOIDED_PAGES = 20  # 20,000 voided orders since the notification's day: more is not a real backlog
POLICY_ORPHAN = "orphan"


def _ignore_unknown() -> bool:
    return settings.GOOGLE_UNKNOWN_TOKEN_POLICY == POLICY_IGNORE


def _notification(event: InboundEvent) -> dict:
    return (event.payload or {}).get("notification") or {}


def _known_status(token: str) -> str | None:
    known = selectors.known_token(token)
    return known.status if known else None


def _with_acknowledgement(snapshots: list[Snapshot], purchase: dict) -> ParseResult:
    """The snapshots to apply, the first one's purchase acknowledged afterwards if it still needs it."""
    pending = services.pending_acknowledgement(snapshots[0], purchase)
    return ParseResult(snapshots=snapshots, after_apply=[pending] if pending else [])


# --- Handlers (one per notification kind) ---------------------------------------------------------

def subscription_notification(event: InboundEvent) -> ParseResult:
    """Any subscriptionNotification, whatever its number: the state is read back from Google."""
    notification = _notification(event)
    notice = mapping.SubscriptionNotice.of(notification)
    token = notice.purchase_token
    if not token:
        return ParseResult(ignored_reason="subscription notification without a purchase token")
    purchase = client.subscription_get(token)  # the notification carries no state
    snapshot = selectors.purchase_snapshot(token, purchase, known_status=_known_status(token),
                                           revoked=notice.number == mapping.SUBSCRIPTION_REVOKED,
                                           event_time=mapping.event_time(notification),
                                           ignore_unknown=_ignore_unknown())
    if snapshot is None:
        return ParseResult(ignored_reason=f"purchase token never seen here and claimed by no user here "
                                          f"(GOOGLE_UNKNOWN_TOKEN_POLICY={POLICY_IGNORE}): another "
                                          "deployment's purchase")
    snapshots = [snapshot]
    linked = purchase.get("linkedPurchaseToken")
    if notice.number == mapping.SUBSCRIPTION_PENDING_PURCHASE_CANCELED and linked:
        old_status = _known_status(linked)
        if old_status is not None:  # a pending plan change was abandoned: the old one goes on; re-read it
            snapshots.append(selectors.purchase_snapshot(linked, client.subscription_get(linked),
                                                         known_status=old_status))
    return _with_acknowledgement(snapshots, purchase)


def _listed_void(voided: mapping.VoidedPurchase, event_at) -> dict | None:
    """The Voided Purchases API's entry for this voided order, or None: Google's own word, not the
    notification's (anyone holding a push credential could send one)."""
    start = mapping.voided_list_start(event_at, timezone.now())
    page_token = None
    for _ in range(MAX_VOIDED_PAGES):
        page = client.voided_purchases_list(start_time_ms=int(start.timestamp() * 1000), page_token=page_token)
        found = mapping.matching_void(page, voided)
        page_token = mapping.next_page_token(page)
        if found is not None or not page_token:
            return found
    return None


def _unconfirmed_void(event: InboundEvent, voided: mapping.VoidedPurchase) -> ParseResult:
    """Google does not list the voided order: retried for a while (its list may lag the notification),
    then ignored. Nothing is recorded either way: no refund, no status change."""
    what = f"voided order {voided.order_id!r} of purchase token {voided.purchase_token[:24]}…"
    if timezone.now() - event.received_at < VOID_CONFIRMATION_WINDOW:
        raise TransientError(f"{what} not listed by the Voided Purchases API yet; looked for again until "
                             f"{VOID_CONFIRMATION_WINDOW} after it arrived")
    logger.warning("Google voided-purchase notification not confirmed by the Voided Purchases API: %s (event %s)",
                   what, event.id)
    return ParseResult(ignored_reason=f"{what} not confirmed by Google Play (not in the Voided Purchases API): "
                                      "no refund recorded, nothing changed")


def voided_purchase(event: InboundEvent) -> ParseResult:
    """A refund or chargeback, once the Voided Purchases API confirms it: the refund transaction, and the
    purchase re-read (REVOKED unless Google still reports it live)."""
    notification = _notification(event)
    voided = mapping.VoidedPurchase.of(notification)
    token, order_id = voided.purchase_token, voided.order_id
    if not voided.is_subscription:
        return ParseResult(ignored_reason=f"voided one-time purchase {order_id!r}: not a subscription")
    if not token:
        return ParseResult(ignored_reason="voided purchase without a purchase token")
    confirmed = _listed_void(voided, mapping.event_time(notification))
    if confirmed is None:
        return _unconfirmed_void(event, voided)
    known_status = _known_status(token)
    at = mapping.voided_at(confirmed) or mapping.event_time(notification) or timezone.now()
    extra = ()
    if order_id:
        amount, currency = selectors.order_amount(order_id)
        extra = (mapping.refund_transaction(order_id=order_id, occurred_at=at, currency=currency,
                                            amount_minor=amount if voided.full_refund else None,
                                            refund_type=voided.refund_type,
                                            voided_reason=confirmed.get("voidedReason")),)
    try:
        purchase = client.subscription_get(token)
    except SubscriptionNotFound:
        # Google no longer knows the token: what the notification says is all there is.
        if known_status is None and _ignore_unknown():
            return ParseResult(ignored_reason="voided purchase of a token never seen here")
        return ParseResult(snapshots=[mapping.voided_snapshot(token, at=at, transactions=extra)])
    # A voided order ends access unless Google still reports the subscription live (e.g. only an
    # earlier renewal was refunded): then only the refund is recorded.
    snapshot = selectors.purchase_snapshot(token, purchase, known_status=known_status, revoked=True,
                                           event_time=mapping.event_time(notification),
                                           ignore_unknown=_ignore_unknown(), extra_transactions=extra)
    if snapshot is None:
        return ParseResult(ignored_reason="voided purchase of a token never seen here and claimed by no user")
    return ParseResult(snapshots=[snapshot])


def play_console_test(event: InboundEvent) -> ParseResult:
    return ParseResult(ignored_reason="test notification from the Play Console")


def one_time_product(event: InboundEvent) -> ParseResult:
    sku = mapping.one_time_product_sku(_notification(event))
    return ParseResult(ignored_reason=f"one-time product {sku!r}: not a subscription")


def undecodable(event: InboundEvent) -> ParseResult:
    return ParseResult(ignored_reason=event.payload["undecodable"])


def unknown_notification(event: InboundEvent) -> ParseResult:
    kinds = mapping.unhandled_kinds(_notification(event))
    return ParseResult(ignored_reason=f"notification kind not handled: {', '.join(kinds) or 'none'}")


def _purchase_request(purchase: Mapping) -> tuple[str, str | None]:
    """The verify request's (purchase token, product id), or InvalidPurchase."""
    token = purchase.get("purchase_token")
    product = purchase.get("product_id")
    if not isinstance(token, str) or not token.strip():
        raise InvalidPurchase("purchase_token is required (the token Google Play Billing returned).",
                              code="invalid_request")
    if product is not None and not isinstance(product, str):
        raise InvalidPurchase("product_id must be a string.", code="invalid_request")
    return token.strip(), product


class GoogleAdapter(ProviderAdapter):
    name = Provider.GOOGLE
    required_settings = ("GOOGLE_PLAY_PACKAGE_NAME",)
    api_settings = ("GOOGLE_SERVICE_ACCOUNT_FILE",)
    HANDLERS = {
        mapping.SUBSCRIPTION: subscription_notification,
        mapping.VOIDED_PURCHASE: voided_purchase,
        mapping.TEST: play_console_test,
        mapping.ONE_TIME_PRODUCT: one_time_product,
        mapping.UNDECODABLE: undecodable,
        mapping.UNKNOWN: unknown_notification,
    }

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

    def checks(self) -> list:
        return auth.system_checks()

    # --- inbound ------------------------------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
        return auth.webhook_authenticate(headers, body, query)

    def decode(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        return auth.webhook_decode(body)

    def parse(self, event: InboundEvent) -> ParseResult:
        """Every notification names its app: another app's (sharing the topic) is ignored before routing."""
        if "undecodable" not in (event.payload or {}):
            package = _notification(event).get("packageName")
            if package != settings.GOOGLE_PLAY_PACKAGE_NAME:
                return ParseResult(ignored_reason=f"package {package!r} is not this deployment's "
                                                  f"({settings.GOOGLE_PLAY_PACKAGE_NAME!r})")
        return super().parse(event)

    def while_failing(self, event: InboundEvent, error: BaseException | None, *, final: bool) -> str:
        """A new purchase is acknowledged before Google's deadline even while its processing fails (not
        when Google itself says it has no such purchase)."""
        if "undecodable" in (event.payload or {}) or isinstance(error, SubscriptionNotFound):
            return ""
        return services.purchase_acknowledge_from_notification(_notification(event), received_at=event.received_at,
                                                              final=final)

    def handler_key(self, event: InboundEvent) -> str:
        """The notification's kind (every subscriptionNotification number goes to one handler)."""
        if "undecodable" in (event.payload or {}):
            return mapping.UNDECODABLE
        return mapping.notification_kind(_notification(event))

    # --- outbound -----------------------------------------------------------------------------
    def fetch(self, subscription) -> Snapshot:
        token = subscription.provider_subscription_id
        return selectors.purchase_snapshot(token, client.subscription_get(token), known_status=subscription.status)

    def verify(self, purchase: Mapping, *, user_id: str | None) -> ParseResult:
        token, product = _purchase_request(purchase)
        try:
            state = client.subscription_get(token)
        except SubscriptionNotFound as exc:
            raise InvalidPurchase(f"Google Play does not know this purchase token ({exc.status}).") from exc
        except PermanentError as exc:
            raise InvalidPurchase(f"Google Play rejected the purchase token: {exc}") from exc
        if product and product not in (mapping.product_id(state), mapping.store_product_id(state)):
            raise InvalidPurchase(f"The purchase is for {mapping.product_id(state)!r}, not {product!r}.",
                                  code="product_mismatch")
        snapshot = selectors.purchase_snapshot(token, state, known_status=_known_status(token))
        return _with_acknowledgement([snapshot], state)

    def cancel(self, subscription) -> Snapshot:
        """Stop renewal at Google (the user keeps access until expiry); the new state is returned."""
        client.subscription_cancel(subscription.provider_subscription_id)
        return self.fetch(subscription)
