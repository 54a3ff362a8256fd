"""The Stripe adapter: signed events in, the subscription as Stripe has it now out.

An event is a trigger, not the truth: Stripe delivers out of order and retries for days, so every
subscription-related event re-reads the subscription from Stripe (observed now). When it cannot be read
(Stripe answers 404, or STRIPE_SECRET_KEY is not set) the event's own copy counts, as of the event's
`created`; an event without a copy (invoice, refund, dispute, Checkout) is applied to the subscription
as we hold it: its money is recorded, a refund or dispute revokes, the status is otherwise kept."""

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from functools import partial

import stripe
from django.conf import settings
from django.utils import timezone

from billing.providers.base import (
    InboundEvent,
    InvalidPurchase,
    NotSupported,
    ParseResult,
    PermanentError,
    ProviderAdapter,
    Rejected,
    StoreUnavailable,
    TransientError,
    VerifiedEvent,
)
from billing.snapshots import Provider, Snapshot
from billing.statuses import Status

from . import catalogue, mapping, selectors
from .client import get_client, is_transient

logger = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300
# Expanded on every subscription read: the price's product names the catalogue entry.
SUBSCRIPTION_EXPAND = ["items.data.price.product"]

SUBSCRIPTION_EVENTS = frozenset({
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.trial_will_end",
    "customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired",
})
INVOICE_EVENTS = frozenset({
    "invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed", "invoice.payment_action_required",
})
PAYMENT_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded"})
CATALOGUE_EVENTS = frozenset({"price.created", "price.updated", "product.updated"})


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value or ""


def _webhook_secrets() -> list[str]:
    # Several comma-separated secrets: a rotation in the dashboard keeps the old one valid for a while.
    return [s.strip() for s in settings.STRIPE_WEBHOOK_SECRET.split(",") if s.strip()]


def _store_ids(obj: dict) -> tuple[str, ...]:
    ids = [obj.get("id")]
    for key in ("subscription", "customer", "invoice", "charge", "payment_intent", "latest_invoice"):
        ids.append(mapping.obj_id(obj.get(key)))
    ids.append(mapping.invoice_subscription_id(obj) if obj.get("object") == "invoice" else None)
    return tuple(dict.fromkeys(i for i in ids if isinstance(i, str) and i))


def _mirror_after_apply(event: dict, _results) -> None:
    """Queue the dj-stripe mirror. Never fails the event: the mirror is a copy, not the truth."""
    from .tasks import mirror_event

    try:
        mirror_event.delay(event)
    except Exception:
        logger.exception("could not queue the dj-stripe mirror of %s", event.get("id"))


def _catalogue_after_apply(subscription: dict, _results) -> None:
    catalogue.products_upsert_from_subscription(subscription=subscription)


class StripeAdapter(ProviderAdapter):
    name = "stripe"
    required_settings = ("STRIPE_WEBHOOK_SECRET",)
    api_settings = ("STRIPE_SECRET_KEY",)

    # --- inbound ------------------------------------------------------------------------------

    def authenticate(self, headers, body: bytes, query) -> VerifiedEvent:
        header = _header(headers, "Stripe-Signature")
        if not header:
            raise Rejected("The Stripe-Signature header is missing.", code="missing_signature")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("The body is not UTF-8.", code="malformed") from None
        # The signature covers the raw bytes: verified before anything is parsed, never re-serialized.
        error = None
        for secret in _webhook_secrets():
            try:
                stripe.WebhookSignature.verify_header(text, header, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
                break
            except stripe.SignatureVerificationError as exc:
                error = exc
        else:
            reason = str(getattr(error, "user_message", None) or error or "no webhook secret")
            raise Rejected(f"The Stripe signature is not valid: {reason}", code="bad_signature")
        try:
            event = json.loads(text)
        except ValueError:
            raise Rejected("The body is not JSON.", code="malformed") from None
        data = event.get("data") if isinstance(event, dict) else None
        if (not isinstance(event, dict) or event.get("object") != "event" or not isinstance(event.get("id"), str)
                or not isinstance(event.get("type"), str) or not isinstance(data, dict)
                or not isinstance(data.get("object"), dict)):
            raise Rejected("The body is not a Stripe event.", code="malformed")
        return VerifiedEvent(
            dedupe_key=event["id"], event_type=event["type"], payload=event,
            occurred_at=mapping.ts(event.get("created")), store_ids=_store_ids(data["object"]),
            environment=mapping.environment(event))

    def parse(self, event: InboundEvent) -> ParseResult:
        payload = event.payload
        kind = payload.get("type", "")
        obj = payload["data"]["object"]
        created = mapping.ts(payload.get("created")) or event.received_at
        if kind in SUBSCRIPTION_EVENTS:
            result = self._from_subscription(obj["id"], fallback=obj, created=created)
        elif kind in INVOICE_EVENTS:
            result = self._from_invoice(obj, kind, created)
        elif kind == "checkout.session.completed":
            result = self._from_checkout_session(obj, created)
        elif kind == "charge.refunded":
            result = self._from_refund(obj, created)
        elif kind == "charge.dispute.created":
            result = self._from_dispute(obj, created)
        elif kind in CATALOGUE_EVENTS:
            result = ParseResult(ignored_reason="catalogue updated",
                                 after_apply=[partial(self._catalogue_from_event, obj)])
        else:
            result = ParseResult(ignored_reason=f"{kind} does not change subscription state")
        if settings.STRIPE_SECRET_KEY:
            result.after_apply.append(partial(_mirror_after_apply, payload))
        return result

    # --- outbound -----------------------------------------------------------------------------

    def fetch(self, subscription) -> Snapshot:
        sub = self._retrieve_subscription(subscription.provider_subscription_id, for_api=True)
        if sub is None:
            raise PermanentError(f"Stripe has no subscription {subscription.provider_subscription_id}")
        return self.snapshot(sub, timezone.now())

    def cancel(self, subscription) -> Snapshot:
        """At period end: access lasts until what was paid for ends (CANCELED, not renewing)."""
        sub = self._modify(subscription.provider_subscription_id, {"cancel_at_period_end": True})
        return self.snapshot(sub, timezone.now(), note="cancel at period end requested")

    def change_plan(self, subscription, *, price_id: str) -> Snapshot:
        """Swap the subscription's price (monthly ↔ yearly), prorated by Stripe."""
        current = self._retrieve_subscription(subscription.provider_subscription_id, for_api=True)
        if current is None:
            raise InvalidPurchase(f"Stripe has no subscription {subscription.provider_subscription_id}",
                                  code="not_found")
        if current.get("status") in ("canceled", "incomplete_expired"):
            raise NotSupported("The subscription has ended at Stripe; start a new one instead.")
        items = (current.get("items") or {}).get("data") or []
        if not items:
            raise InvalidPurchase("The subscription has no item to change.", code="invalid_request")
        sub = self._modify(subscription.provider_subscription_id, {
            "items": [{"id": items[0]["id"], "price": price_id}],
            "proration_behavior": "create_prorations",
        })
        catalogue.products_upsert_from_subscription(subscription=sub)
        return self.snapshot(sub, timezone.now(), note=f"plan changed to {price_id}")

    # --- snapshots ----------------------------------------------------------------------------

    def snapshot(self, sub: dict, observed_at: datetime, *, user_id: str | None = None, status: str | None = None,
                  transactions=(), extra_raw: dict | None = None, note: str = "") -> Snapshot:
        """The subscription's state; a refund or dispute that revoked access stays in force until a
        newer invoice (a new payment) replaces the one it was for."""
        extra_raw = dict(extra_raw or {})
        if status is None:
            revoked_for = selectors.revoked_for_invoice(sub["id"])
            if revoked_for and revoked_for == mapping.obj_id(sub.get("latest_invoice")):
                status = Status.REVOKED
                extra_raw[selectors.REVOKED_FOR_INVOICE] = revoked_for
                note = mapping_note(note, f"kept REVOKED: invoice {revoked_for} was refunded or disputed")
        return mapping.subscription_snapshot(sub, observed_at=observed_at, user_id=user_id, status=status,
                                             transactions=tuple(t for t in transactions if t is not None),
                                             extra_raw=extra_raw, note=note)

    def _current(self, subscription_id: str, *, fallback: dict | None,
                 created: datetime) -> tuple[dict | None, datetime]:
        """The subscription as Stripe has it now (observed now), else the event's copy (observed at the event)."""
        if settings.STRIPE_SECRET_KEY:
            sub = self._retrieve_subscription(subscription_id)
            if sub is not None:
                return sub, timezone.now()
        if isinstance(fallback, dict) and fallback.get("object") == "subscription":
            return fallback, created
        return None, created

    def _from_subscription(self, subscription_id: str, *, fallback: dict | None, created: datetime,
                           user_id: str | None = None, customer_id: str | None = None,
                           transactions=()) -> ParseResult:
        sub, observed = self._current(subscription_id, fallback=fallback, created=created)
        if sub is not None:
            snapshot = self.snapshot(sub, observed, user_id=user_id, transactions=transactions)
            return ParseResult(snapshots=[snapshot], after_apply=[partial(_catalogue_after_apply, sub)])
        transactions = tuple(t for t in transactions if t is not None)
        if not transactions and not user_id:
            return ParseResult(ignored_reason=f"{_unreadable(subscription_id)}; its state comes from its "
                                              "customer.subscription events")
        stored = self._stored_or_wait(subscription_id)
        if stored is None:
            return ParseResult(ignored_reason=f"{_unreadable(subscription_id)} and it is not known here")
        return ParseResult(snapshots=[self._stored_snapshot(
            stored, created=created, transactions=transactions, user_id=user_id, customer_id=customer_id,
            note=f"{_unreadable(subscription_id)}: applied to the stored state")])

    def _stored_or_wait(self, subscription_id: str) -> selectors.Stored | None:
        """Our copy of a subscription Stripe's copy of which cannot be read. Without the API key an
        unknown one is retried: Stripe sends invoice.paid and customer.subscription.created together,
        in no set order. With the key, Stripe answered 404: a retry cannot help."""
        stored = selectors.stored_subscription(subscription_id)
        if stored is None and not settings.STRIPE_SECRET_KEY:
            raise TransientError(f"subscription {subscription_id} is not known yet and cannot be read without "
                                 "STRIPE_SECRET_KEY: retried until its customer.subscription event is applied")
        return stored

    def _stored_snapshot(self, stored: selectors.Stored, *, created: datetime, transactions=(),
                         revoked_for: str | None = None, user_id: str | None = None,
                         customer_id: str | None = None, note: str = "") -> Snapshot:
        """What an event proves (money moved, who the user is, a refund or dispute), applied to the
        subscription as we have it: the event carries no copy of the subscription."""
        common = {"provider": Provider.STRIPE, "provider_subscription_id": stored.subscription_id,
                  "environment": stored.environment, "transactions": tuple(transactions)}
        if revoked_for:
            # A revocation is a fact of its own: as of the refund, but never stale against the state
            # read here (a late or retried refund still revokes).
            observed = max(created, stored.last_event_at) if stored.last_event_at else created
            return Snapshot(**common, status=Status.REVOKED, observed_at=observed,
                            raw={**stored.raw, selectors.REVOKED_FOR_INVOICE: revoked_for}, note=note)
        # The status as stored, as of the stored state (derived: it tells nothing newer). If a newer
        # state is applied before it, this snapshot is stale: that state stands, the money is still recorded.
        return Snapshot(**common, status=stored.status, observed_at=stored.last_event_at or created, derived=True,
                        user_id=user_id, identity_field=mapping.CUSTOMER_IDENTITY if customer_id else None,
                        identity_value=customer_id, note=note)

    def _from_invoice(self, invoice: dict, kind: str, created: datetime) -> ParseResult:
        subscription_id = mapping.invoice_subscription_id(invoice)
        if not subscription_id:
            return ParseResult(ignored_reason="the invoice is not for a subscription")
        transactions = (mapping.invoice_transaction(invoice),) if kind in PAYMENT_EVENTS else ()
        return self._from_subscription(subscription_id, fallback=None, created=created, transactions=transactions)

    def _from_checkout_session(self, session: dict, created: datetime) -> ParseResult:
        if session.get("mode") != "subscription" or not session.get("subscription"):
            return ParseResult(ignored_reason="not a subscription Checkout Session")
        user_id = session.get("client_reference_id") or (session.get("metadata") or {}).get(mapping.USER_ID_KEY)
        subscription = session["subscription"]
        return self._from_subscription(mapping.obj_id(subscription),
                                       fallback=subscription if isinstance(subscription, dict) else None,
                                       created=created, user_id=user_id,
                                       customer_id=mapping.obj_id(session.get("customer")))

    def _from_refund(self, charge: dict, created: datetime) -> ParseResult:
        """Refund Transactions; a full refund of the current period's invoice revokes access
        (a partial refund is a goodwill gesture: access is unchanged)."""
        invoice_id = self._invoice_of_charge(charge)
        subscription_id = self._subscription_of_invoice(invoice_id) if invoice_id else None
        if not subscription_id:
            return ParseResult(ignored_reason="the charge is not for a subscription invoice")
        transactions = mapping.refund_transactions(charge, self._refunds_of_charge(charge))
        full = mapping.charge_fully_refunded(charge)
        sub, _ = self._current(subscription_id, fallback=None, created=created)
        if sub is None:
            stored = self._stored_or_wait(subscription_id)
            if stored is None:
                return ParseResult(ignored_reason=f"{_unreadable(subscription_id)} and it is not known here")
            revoke = full and stored.latest_invoice == invoice_id
            return ParseResult(snapshots=[self._stored_snapshot(
                stored, created=created, transactions=transactions, revoked_for=invoice_id if revoke else None,
                note=_refund_note(charge, revoke))])
        revoke = full and mapping.obj_id(sub.get("latest_invoice")) == invoice_id
        snapshot = self.snapshot(
            sub, timezone.now(), status=Status.REVOKED if revoke else None, transactions=transactions,
            extra_raw={selectors.REVOKED_FOR_INVOICE: invoice_id} if revoke else None,
            note=_refund_note(charge, revoke))
        return ParseResult(snapshots=[snapshot])

    def _from_dispute(self, dispute: dict, created: datetime) -> ParseResult:
        """A chargeback: the money is gone and the payer says they did not agree to pay; access is revoked."""
        charge_id = mapping.obj_id(dispute.get("charge"))
        invoice_id = selectors.invoice_for_charge(charge_id, mapping.obj_id(dispute.get("payment_intent"))) \
            if charge_id else None
        if not invoice_id and charge_id and settings.STRIPE_SECRET_KEY:
            charge = self._api(lambda c: c.v1.charges.retrieve(charge_id))
            invoice_id = self._invoice_of_charge(charge) if charge else None
        subscription_id = self._subscription_of_invoice(invoice_id) if invoice_id else None
        if not subscription_id:
            return ParseResult(ignored_reason="the disputed charge is not for a subscription invoice")
        transactions = (mapping.dispute_transaction(dispute),)
        note = f"charge {charge_id} disputed ({dispute.get('reason')}): access revoked"
        sub, _ = self._current(subscription_id, fallback=None, created=created)
        if sub is None:
            stored = self._stored_or_wait(subscription_id)
            if stored is None:
                return ParseResult(ignored_reason=f"{_unreadable(subscription_id)} and it is not known here")
            return ParseResult(snapshots=[self._stored_snapshot(stored, created=created, transactions=transactions,
                                                                revoked_for=invoice_id, note=note)])
        snapshot = self.snapshot(sub, timezone.now(), status=Status.REVOKED, transactions=transactions,
                                 extra_raw={selectors.REVOKED_FOR_INVOICE: invoice_id}, note=note)
        return ParseResult(snapshots=[snapshot])

    def _catalogue_from_event(self, obj: dict, _results) -> None:
        # Without the API key the event's own copy is all there is (a product's prices cannot be listed).
        has_key = bool(settings.STRIPE_SECRET_KEY)
        if obj.get("object") == "price":
            price = self._api(lambda c: c.v1.prices.retrieve(obj["id"], {"expand": ["product"]})) if has_key else None
            catalogue.product_upsert_from_price(price=mapping.parse_price(price or obj))
        elif obj.get("object") == "product" and has_key:
            prices = self._api(lambda c: c.v1.prices.list({"product": obj["id"], "limit": 100}))
            for price in (prices or {}).get("data") or []:
                price["product"] = obj
                catalogue.product_upsert_from_price(price=mapping.parse_price(price))

    # --- Stripe API ---------------------------------------------------------------------------

    def _api(self, call, *, for_api: bool = False):
        """One Stripe call as a plain dict; None for a 404. Unreachable / 5xx / 429 → TransientError
        (StoreUnavailable for API callers); any other refusal → PermanentError (a fix is needed)."""
        if for_api:
            self.ensure_configured(for_api=True)
        try:
            result = call(get_client())
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            if for_api:
                raise InvalidPurchase(exc.user_message or str(exc), code=exc.code or "invalid_request") from exc
            raise PermanentError(f"Stripe refused: {exc.user_message or exc}") from exc
        except stripe.StripeError as exc:
            if is_transient(exc):
                error = StoreUnavailable if for_api else TransientError
                raise error(f"Stripe did not answer: {exc.user_message or exc}") from exc
            if for_api and isinstance(exc, stripe.CardError):
                raise InvalidPurchase(exc.user_message or str(exc), code=exc.code or "card_error") from exc
            raise PermanentError(f"Stripe refused: {exc.user_message or exc}") from exc
        return plain(result)

    def _retrieve_subscription(self, subscription_id: str, *, for_api: bool = False) -> dict | None:
        return self._api(lambda c: c.v1.subscriptions.retrieve(subscription_id, {"expand": SUBSCRIPTION_EXPAND}),
                         for_api=for_api)

    def _modify(self, subscription_id: str, params: dict) -> dict:
        sub = self._api(lambda c: c.v1.subscriptions.update(
            subscription_id, {**params, "expand": SUBSCRIPTION_EXPAND}), for_api=True)
        if sub is None:
            raise InvalidPurchase(f"Stripe has no subscription {subscription_id}", code="not_found")
        return sub

    def _invoice_of_charge(self, charge: dict) -> str | None:
        invoice_id = mapping.obj_id(charge.get("invoice"))  # API versions before 2025-03-31
        if invoice_id or not settings.STRIPE_SECRET_KEY:
            return invoice_id
        payment_intent = mapping.obj_id(charge.get("payment_intent"))
        if not payment_intent:
            return None
        payments = self._api(lambda c: c.v1.invoice_payments.list(
            {"payment": {"type": "payment_intent", "payment_intent": payment_intent}, "limit": 1}))
        data = (payments or {}).get("data") or []
        return mapping.obj_id(data[0].get("invoice")) if data else None

    def _subscription_of_invoice(self, invoice_id: str) -> str | None:
        known = selectors.subscription_id_for_invoice(invoice_id)
        if known or not settings.STRIPE_SECRET_KEY:
            return known
        invoice = self._api(lambda c: c.v1.invoices.retrieve(invoice_id))
        return mapping.invoice_subscription_id(invoice) if invoice else None

    def _refunds_of_charge(self, charge: dict) -> list[dict]:
        """The event's own refunds (API versions before 2022-11-15 include them) merged with Stripe's
        list (the event's can be truncated, and current versions send none); Stripe's copy wins."""
        refunds = {r["id"]: r for r in (charge.get("refunds") or {}).get("data") or [] if r.get("id")}
        if settings.STRIPE_SECRET_KEY:
            listed = self._api(lambda c: c.v1.refunds.list({"charge": charge["id"], "limit": 100}))
            refunds.update((r["id"], r) for r in (listed or {}).get("data") or [] if r.get("id"))
        return list(refunds.values())


def plain(obj) -> dict:
    """A Stripe object as JSON-able data (the library decodes `*_decimal` fields to Decimal)."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return json.loads(json.dumps(data, default=str))


def mapping_note(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _unreadable(subscription_id: str) -> str:
    why = "Stripe has no" if settings.STRIPE_SECRET_KEY else "without STRIPE_SECRET_KEY Stripe cannot be asked for"
    return f"{why} subscription {subscription_id}"


def _refund_note(charge: dict, revoked: bool) -> str:
    if revoked:
        return f"charge {charge.get('id')} fully refunded: access revoked"
    return (f"charge {charge.get('id')} refunded ({charge.get('amount_refunded')} of {charge.get('amount')}): "
            "access unchanged")
