"""The Stripe adapter: signed events in, the subscription as Stripe has it now out.

An event is a trigger, not the truth: Stripe delivers out of order and retries for days, so every
subscription-related event re-reads the subscription from Stripe (observed now). When it cannot be read
(Stripe answers 404, or STRIPE_SECRET_KEY is not set) the event's own copy counts, as of the event's
`created`; an event without a copy (invoice, refund, dispute, Checkout) is applied to the subscription
as we hold it: its money is recorded, a refund or dispute revokes, the status is otherwise kept.

The handlers come first; the class, at the end, routes event types to them through its HANDLERS table."""

import logging
from datetime import datetime
from functools import partial
from typing import NamedTuple

from django.conf import settings
from django.utils import timezone

from billing.providers.base import (
    InboundEvent,
    InvalidPurchase,
    NotSupported,
    ParseResult,
    ProviderAdapter,
    TransientError,
    VerifiedEvent,
    read_once_in_group,
)
from billing.providers.common import SubscriptionNotFound, datetime_from_seconds
from billing.snapshots import Provider, Snapshot
from billing.statuses import Status

from . import client, mapping, selectors, services
from .auth import webhook_authenticate, webhook_decode
from .tasks import mirror_soon

logger = logging.getLogger(__name__)


# --- Handlers (StripeAdapter.HANDLERS) -------------------------------------------------------------

def _created(event: InboundEvent) -> datetime:
    return datetime_from_seconds(event.payload.get("created")) or event.received_at


def _object(event: InboundEvent) -> dict:
    return event.payload["data"]["object"]


def subscription_changed(event: InboundEvent) -> ParseResult:
    """customer.subscription.*: the subscription's current state."""
    obj = _object(event)
    return _from_subscription(obj["id"], fallback=obj, created=_created(event))


def invoice_changed(event: InboundEvent) -> ParseResult:
    """invoice.*: the subscription's state, and a paid invoice's money."""
    invoice = _object(event)
    subscription_id = mapping.invoice_subscription_id(invoice)
    if not subscription_id:
        return ParseResult(ignored_reason="the invoice is not for a subscription")
    created = _created(event)
    current = _current(subscription_id, fallback=None, created=created)
    paid = event.event_type in PAYMENT_EVENTS
    transactions = (mapping.invoice_transaction(invoice, _charge_of_paid_invoice(invoice, current.latest_invoice)),) \
        if paid else ()
    return _from_subscription(subscription_id, fallback=None, created=created, transactions=transactions,
                              current=current)


def checkout_session_completed(event: InboundEvent) -> ParseResult:
    session = _object(event)
    if session.get("mode") != "subscription" or not session.get("subscription"):
        return ParseResult(ignored_reason="not a subscription Checkout Session")
    user_id = session.get("client_reference_id") or (session.get("metadata") or {}).get(mapping.USER_ID_KEY)
    subscription = session["subscription"]
    return _from_subscription(mapping.obj_id(subscription),
                              fallback=subscription if isinstance(subscription, dict) else None,
                              created=_created(event), user_id=user_id,
                              customer_id=mapping.obj_id(session.get("customer")))


def charge_refunded(event: InboundEvent) -> ParseResult:
    """Refund Transactions; a full refund of the current period's invoice revokes access
    (a partial refund is a goodwill gesture: access is unchanged)."""
    charge, created = _object(event), _created(event)
    invoice_id = _invoice_of_charge(charge)
    subscription_id = _subscription_of_invoice(invoice_id) if invoice_id else None
    if not subscription_id:
        return ParseResult(ignored_reason="the charge is not for a subscription invoice")
    transactions = mapping.refund_transactions(charge, _refunds_of_charge(charge), invoice_id=invoice_id)
    full = mapping.charge_fully_refunded(charge)
    sub = _current(subscription_id, fallback=None, created=created).sub
    if sub is None:
        stored = _stored_or_wait(subscription_id)
        if stored is None:
            return ParseResult(ignored_reason=f"{_unreadable(subscription_id)} and it is not known here")
        revoke = full and stored.latest_invoice == invoice_id
        return ParseResult(snapshots=[_stored_snapshot(
            stored, created=created, transactions=transactions, revoked_for=invoice_id if revoke else None,
            note=_refund_note(charge, revoke))])
    revoke = full and mapping.obj_id(sub.get("latest_invoice")) == invoice_id
    snapshot = services.subscription_state(
        sub, timezone.now(), status=Status.REVOKED if revoke else None, transactions=transactions,
        extra_raw={selectors.REVOKED_FOR_INVOICE: invoice_id} if revoke else None,
        note=_refund_note(charge, revoke))
    return ParseResult(snapshots=[snapshot])


def charge_dispute_created(event: InboundEvent) -> ParseResult:
    """A chargeback: the money is gone and the payer says they did not agree to pay; access is revoked."""
    dispute, created = _object(event), _created(event)
    charge_id = mapping.obj_id(dispute.get("charge"))
    invoice_id = selectors.invoice_for_charge(charge_id, mapping.obj_id(dispute.get("payment_intent"))) \
        if charge_id else None
    if not invoice_id and charge_id and settings.STRIPE_SECRET_KEY:
        try:
            invoice_id = _invoice_of_charge(client.charge_get(charge_id))
        except SubscriptionNotFound:
            invoice_id = None
    subscription_id = _subscription_of_invoice(invoice_id) if invoice_id else None
    if not subscription_id:
        return ParseResult(ignored_reason="the disputed charge is not for a subscription invoice")
    transactions = (mapping.dispute_transaction(dispute, invoice_id=invoice_id),)
    note = f"charge {charge_id} disputed ({dispute.get('reason')}): access revoked"
    sub = _current(subscription_id, fallback=None, created=created).sub
    if sub is None:
        stored = _stored_or_wait(subscription_id)
        if stored is None:
            return ParseResult(ignored_reason=f"{_unreadable(subscription_id)} and it is not known here")
        return ParseResult(snapshots=[_stored_snapshot(stored, created=created, transactions=transactions,
                                                       revoked_for=invoice_id, note=note)])
    snapshot = services.subscription_state(sub, timezone.now(), status=Status.REVOKED, transactions=transactions,
                                           extra_raw={selectors.REVOKED_FOR_INVOICE: invoice_id}, note=note)
    return ParseResult(snapshots=[snapshot])


def charge_dispute_closed(event: InboundEvent) -> ParseResult:
    """A dispute decided: when won, the money comes back (a refund_reversed Transaction); access stays
    as it is (Stripe does not restore a subscription, nor do we)."""
    dispute, created = _object(event), _created(event)
    charge_id = mapping.obj_id(dispute.get("charge"))
    invoice_id = selectors.invoice_for_charge(charge_id, mapping.obj_id(dispute.get("payment_intent"))) \
        if charge_id else None
    subscription_id = selectors.subscription_id_for_invoice(invoice_id) if invoice_id else None
    reversal = mapping.dispute_won_transaction(dispute, invoice_id=invoice_id or "")
    if reversal is None:
        return ParseResult(ignored_reason=f"dispute {dispute.get('id')} closed as {dispute.get('status')!r}")
    if not subscription_id:
        return ParseResult(ignored_reason="the disputed charge is not for a subscription invoice recorded here")
    stored = _stored_or_wait(subscription_id)
    if stored is None:
        return ParseResult(ignored_reason=f"subscription {subscription_id} is not known here")
    return ParseResult(snapshots=[_stored_snapshot(stored, created=created, transactions=(reversal,),
                                                   note=f"dispute {dispute.get('id')} won: the money is back")])


def catalogue_changed(event: InboundEvent) -> ParseResult:
    """price.* / product.updated: the billing Products, after the (empty) apply."""
    return ParseResult(ignored_reason="catalogue updated",
                       after_apply=[partial(_catalogue_after_apply, _object(event))])


SUBSCRIPTION_EVENTS = (
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.trial_will_end",
    "customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired",
)
INVOICE_EVENTS = (
    "invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed", "invoice.payment_action_required",
)
PAYMENT_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded"})
CATALOGUE_EVENTS = ("price.created", "price.updated", "product.updated")



# --- Follow-ups (after the snapshots are applied) ----------------------------------------------

def _mirror_after_apply(event: dict, _results) -> None:
    """Queue the dj-stripe mirror (batched, on the `slow` queue: tasks.py). Never fails the event: the
    mirror is a copy, not the truth."""
    try:
        mirror_soon(event)
    except Exception:
        logger.exception("could not queue the dj-stripe mirror of %s", event.get("id"))


def _catalogue_after_apply(obj: dict, _results) -> None:
    services.products_upsert_from_event(obj=obj)


def _products_after_apply(subscription: dict, _results) -> None:
    # Only the prices new to us or changed (a subscription event almost always carries known ones).
    services.products_sync_from_subscription(subscription=subscription)


# --- The subscription an event is about --------------------------------------------------------

class _Current(NamedTuple):
    sub: dict | None  # None: Stripe's copy cannot be read and the event carries none
    observed: datetime
    latest_invoice: dict | None = None  # read with the subscription: its latest invoice, with its payments


def _current(subscription_id: str, *, fallback: dict | None, created: datetime) -> _Current:
    """The subscription as Stripe has it now (observed now), else the event's copy (observed at the event)."""
    if settings.STRIPE_SECRET_KEY:
        try:
            # Once per drain group (several events of one subscription arrive together), as of the read.
            return read_once_in_group(("stripe", "subscription", subscription_id),
                                      partial(_read_subscription, subscription_id))
        except SubscriptionNotFound:
            pass
    if isinstance(fallback, dict) and fallback.get("object") == "subscription":
        return _Current(fallback, created)
    return _Current(None, created)


def _read_subscription(subscription_id: str) -> _Current:
    sub, latest_invoice = client.subscription_get_with_latest_invoice(subscription_id)
    return _Current(sub, timezone.now(), latest_invoice)


def _from_subscription(subscription_id: str, *, fallback: dict | None, created: datetime,
                       user_id: str | None = None, customer_id: str | None = None,
                       transactions=(), current: _Current | None = None) -> ParseResult:
    sub, observed, _ = current or _current(subscription_id, fallback=fallback, created=created)
    if sub is not None:
        snapshot = services.subscription_state(sub, observed, user_id=user_id, transactions=transactions)
        return ParseResult(snapshots=[snapshot], after_apply=[partial(_products_after_apply, sub)])
    transactions = tuple(t for t in transactions if t is not None)
    if not transactions and not user_id:
        return ParseResult(ignored_reason=f"{_unreadable(subscription_id)}; its state comes from its "
                                          "customer.subscription events")
    stored = _stored_or_wait(subscription_id)
    if stored is None:
        return ParseResult(ignored_reason=f"{_unreadable(subscription_id)} and it is not known here")
    return ParseResult(snapshots=[_stored_snapshot(
        stored, created=created, transactions=transactions, user_id=user_id, customer_id=customer_id,
        note=f"{_unreadable(subscription_id)}: applied to the stored state")])


def _stored_or_wait(subscription_id: str) -> selectors.Stored | None:
    """Our copy of a subscription Stripe's copy of which cannot be read. Without the API key an
    unknown one is retried: Stripe sends invoice.paid and customer.subscription.created together,
    in no set order. With the key, Stripe answered 404: a retry cannot help."""
    stored = selectors.stored_subscription(subscription_id)
    if stored is None and not settings.STRIPE_SECRET_KEY:
        raise TransientError(f"subscription {subscription_id} is not known yet and cannot be read without "
                             "STRIPE_SECRET_KEY: retried until its customer.subscription event is applied")
    return stored


def _stored_snapshot(stored: selectors.Stored, *, created: datetime, transactions=(),
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


def _invoice_of_charge(charge: dict) -> str | None:
    invoice_id = mapping.obj_id(charge.get("invoice"))  # API versions before 2025-03-31
    if invoice_id or not settings.STRIPE_SECRET_KEY:
        return invoice_id
    payment_intent = mapping.obj_id(charge.get("payment_intent"))
    if not payment_intent:
        return None
    data = client.invoice_payments_list(payment_intent=payment_intent).get("data") or []
    return mapping.obj_id(data[0].get("invoice")) if data else None


def _subscription_of_invoice(invoice_id: str) -> str | None:
    known = selectors.subscription_id_for_invoice(invoice_id)
    if known or not settings.STRIPE_SECRET_KEY:
        return known
    try:
        return mapping.invoice_subscription_id(client.invoice_get(invoice_id))
    except SubscriptionNotFound:
        return None


def _charge_of_paid_invoice(invoice: dict, latest_invoice: dict | None) -> dict | None:
    """The charge that paid an invoice, with its balance transaction (Stripe's fee and net), read once:
    a redelivered invoice already in the ledger is not read again. When the invoice is the subscription's
    latest, its payment came with the subscription's read (`latest_invoice`): one call, the payment
    intent with its charge and the charge's balance transaction. Otherwise two (an expansion is at most
    four levels deep): the invoice's payment with its payment intent, then the charge."""
    if not settings.STRIPE_SECRET_KEY or not invoice.get("id"):
        return None
    if not latest_invoice or latest_invoice.get("id") != invoice["id"]:
        latest_invoice = None
    # invoice.paid and invoice.payment_succeeded of one payment usually share a drain group: read once.
    return read_once_in_group(("stripe", "paid-invoice-charge", invoice["id"]),
                              partial(_read_charge_of, invoice, latest_invoice))


def _read_charge_of(invoice: dict, latest_invoice: dict | None) -> dict | None:
    if selectors.invoice_recorded(invoice["id"]):
        return None
    charge_id = mapping.obj_id(invoice.get("charge"))  # API versions before 2025-03-31
    payment = mapping.invoice_paid_payment(latest_invoice) if not charge_id and latest_invoice else None
    listed = (latest_invoice or {}).get("payments")
    if not charge_id and not payment and isinstance(listed, dict) and not listed.get("data") \
            and not listed.get("has_more"):
        return None  # Stripe holds no payment for it (a zero-amount invoice): what the list would say
    if payment and payment.get("payment_intent"):
        try:
            intent = client.payment_intent_get(mapping.obj_id(payment["payment_intent"]),
                                               expand=("latest_charge.balance_transaction",))
        except SubscriptionNotFound:
            return None
        charge = intent.get("latest_charge")
        return charge if isinstance(charge, dict) else None
    charge_id = charge_id or (mapping.obj_id(payment.get("charge")) if payment else None)
    if not charge_id:
        payments = client.invoice_payments_list(invoice=invoice["id"], expand=("data.payment.payment_intent",))
        data = payments.get("data") or []
        intent = ((data[0].get("payment") or {}).get("payment_intent") if data else None) or {}
        charge_id = mapping.obj_id(intent.get("latest_charge")) if isinstance(intent, dict) else None
    if not charge_id:
        return None
    try:
        return client.charge_get(charge_id, expand=("balance_transaction",))
    except SubscriptionNotFound:
        return None


def _refunds_of_charge(charge: dict) -> list[dict]:
    """The event's own refunds (API versions before 2022-11-15 include them) merged with Stripe's
    list (the event's can be truncated, and current versions send none); Stripe's copy wins."""
    refunds = {r["id"]: r for r in (charge.get("refunds") or {}).get("data") or [] if r.get("id")}
    if settings.STRIPE_SECRET_KEY:
        listed = client.refunds_list(charge=charge["id"])
        refunds.update((r["id"], r) for r in listed.get("data") or [] if r.get("id"))
    return list(refunds.values())


def _unreadable(subscription_id: str) -> str:
    why = "Stripe has no" if settings.STRIPE_SECRET_KEY else "without STRIPE_SECRET_KEY Stripe cannot be asked for"
    return f"{why} subscription {subscription_id}"


def _refund_note(charge: dict, revoked: bool) -> str:
    if revoked:
        return f"charge {charge.get('id')} fully refunded: access revoked"
    return (f"charge {charge.get('id')} refunded ({charge.get('amount_refunded')} of {charge.get('amount')}): "
            "access unchanged")


def _subscription_update(subscription_id: str, params: dict) -> dict:
    try:
        return client.subscription_update(subscription_id, params)
    except SubscriptionNotFound as exc:
        raise InvalidPurchase(str(exc), code="not_found") from exc


# --- The adapter ------------------------------------------------------------------------------

class StripeAdapter(ProviderAdapter):
    name = "stripe"
    required_settings = ("STRIPE_WEBHOOK_SECRET",)
    api_settings = ("STRIPE_SECRET_KEY",)
    HANDLERS = {
        **dict.fromkeys(SUBSCRIPTION_EVENTS, subscription_changed),
        **dict.fromkeys(INVOICE_EVENTS, invoice_changed),
        "checkout.session.completed": checkout_session_completed,
        "charge.refunded": charge_refunded,
        "charge.dispute.created": charge_dispute_created,
        "charge.dispute.closed": charge_dispute_closed,
        **dict.fromkeys(CATALOGUE_EVENTS, catalogue_changed),
    }

    def authenticate(self, headers, body: bytes, query) -> VerifiedEvent:
        return webhook_authenticate(headers, body, query)

    def decode(self, body: bytes, headers) -> VerifiedEvent:
        return webhook_decode(body)

    def parse(self, event: InboundEvent) -> ParseResult:
        """Through HANDLERS; every event, whatever its type, also feeds the dj-stripe mirror when the
        API key is set."""
        result = super().parse(event)
        if settings.STRIPE_SECRET_KEY:
            result.after_apply.append(partial(_mirror_after_apply, event.payload))
        return result

    def fetch(self, subscription) -> Snapshot:
        """Raises SubscriptionNotFound when Stripe has no such subscription."""
        self.ensure_configured(for_api=True)
        sub = client.subscription_get(subscription.provider_subscription_id)
        return services.subscription_state(sub, timezone.now())

    def cancel(self, subscription) -> Snapshot:
        """At period end: access lasts until what was paid for ends (CANCELED, not renewing)."""
        self.ensure_configured(for_api=True)
        sub = _subscription_update(subscription.provider_subscription_id, {"cancel_at_period_end": True})
        return services.subscription_state(sub, timezone.now(), note="cancel at period end requested")

    def change_plan(self, subscription, *, price_id: str) -> Snapshot:
        """Swap the subscription's price (monthly ↔ yearly), prorated by Stripe. Only to an offered price
        (services.PriceNotOffered otherwise, before Stripe is asked anything)."""
        self.ensure_configured(for_api=True)
        services.price_ensure_offered(price_id)
        subscription_id = subscription.provider_subscription_id
        try:
            current = client.subscription_get(subscription_id)
        except SubscriptionNotFound as exc:
            raise InvalidPurchase(str(exc), code="not_found") from exc
        if current.get("status") in ("canceled", "incomplete_expired"):
            raise NotSupported("The subscription has ended at Stripe; start a new one instead.")
        items = (current.get("items") or {}).get("data") or []
        if not items:
            raise InvalidPurchase("The subscription has no item to change.", code="invalid_request")
        sub = _subscription_update(subscription_id, {
            "items": [{"id": items[0]["id"], "price": price_id}],
            "proration_behavior": "create_prorations",
        })
        services.products_upsert_from_subscription(subscription=sub)
        return services.subscription_state(sub, timezone.now(), note=f"plan changed to {price_id}")
