"""Web subscriptions through Stripe: the operations behind /api/stripe/* (services, not views).

The customer is created once per subscriber (its id is the subscriber's `stripe_customer_id`) and
reused; every subscription carries `metadata.user_id`, so its events name the user whatever route
it was bought through."""

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import stripe
from django.utils import timezone
from rest_framework import status

from accounts.models import Subscriber
from accounts.services import subscriber_get_or_create, subscriber_set_identity
from billing.apply import apply_snapshot
from billing.models import Subscription
from billing.providers.base import NotConfigured
from billing.snapshots import Cause, CauseKind
from config.api_errors import ApiError

from . import catalogue, mapping
from .adapter import SUBSCRIPTION_EXPAND, StripeAdapter, plain
from .client import get_client, is_transient

logger = logging.getLogger(__name__)


@contextmanager
def stripe_errors():
    """Stripe's refusals as clear API errors with Stripe's own message; Stripe unreachable → 502."""
    try:
        yield
    except NotConfigured as exc:
        raise ApiError(str(exc), code="provider_not_configured", status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                       details={"provider": "stripe", "missing_settings": exc.missing}) from exc
    except stripe.CardError as exc:
        raise ApiError(exc.user_message or str(exc), code=exc.code or "card_error",
                       status_code=status.HTTP_402_PAYMENT_REQUIRED,
                       details={"decline_code": getattr(exc.error, "decline_code", None)}) from exc
    except stripe.StripeError as exc:
        if is_transient(exc):
            raise ApiError(f"Stripe did not answer; try again shortly. ({exc.user_message or exc})",
                           code="store_unavailable", status_code=status.HTTP_502_BAD_GATEWAY) from exc
        if isinstance(exc, stripe.InvalidRequestError):
            raise ApiError(exc.user_message or str(exc), code=exc.code or "invalid_request",
                           details={"param": getattr(exc, "param", None)}) from exc
        # A bad key or a permission Stripe refuses: our configuration, not the caller's request.
        logger.error("Stripe refused our request: %s", exc)
        raise ApiError(f"Stripe refused the request: {exc.user_message or exc}", code="stripe_error",
                       status_code=status.HTTP_502_BAD_GATEWAY) from exc


def customer_for_user(*, user_id: str, email: str = "") -> str:
    """The subscriber's Stripe customer, created on first use."""
    subscriber = subscriber_get_or_create(external_id=user_id, email=email)
    if subscriber.stripe_customer_id:
        return subscriber.stripe_customer_id
    params = {"metadata": {mapping.USER_ID_KEY: subscriber.external_id}}
    if subscriber.email:
        params["email"] = subscriber.email
    # The idempotency key makes two concurrent first calls create one customer, not two.
    customer = get_client().v1.customers.create(
        params, {"idempotency_key": f"billing-customer-{subscriber.external_id}"})
    if not subscriber_set_identity(subscriber=subscriber, field=mapping.CUSTOMER_IDENTITY, value=customer.id):
        return Subscriber.objects.get(pk=subscriber.pk).stripe_customer_id or customer.id
    return customer.id


@dataclass(frozen=True)
class SetupIntentResult:
    setup_intent_id: str
    client_secret: str
    customer_id: str
    status: str
    requires_action: bool


def setup_intent_create(*, user_id: str) -> SetupIntentResult:
    """A payment method saved for off-session renewals; the front end confirms it (3-D Secure there)."""
    customer_id = customer_for_user(user_id=user_id)
    intent = get_client().v1.setup_intents.create({
        "customer": customer_id, "usage": "off_session", "payment_method_types": ["card"],
        "metadata": {mapping.USER_ID_KEY: user_id}})
    return SetupIntentResult(setup_intent_id=intent.id, client_secret=intent.client_secret, customer_id=customer_id,
                             status=intent.status, requires_action=intent.status == "requires_action")


@dataclass(frozen=True)
class StartedSubscription:
    subscription: Subscription
    requires_action: bool
    client_secret: str | None


def subscription_start(*, user_id: str, price_id: str, payment_method_id: str, actor: str) -> StartedSubscription:
    """Subscribe with a saved payment method. The first invoice is charged at once: paid → the
    subscription is live now; needs 3-D Secure → `requires_action` and the client secret to confirm;
    declined → a 402 with Stripe's message (and the incomplete subscription is canceled at Stripe)."""
    client = get_client()
    customer_id = customer_for_user(user_id=user_id)
    client.v1.payment_methods.attach(payment_method_id, {"customer": customer_id})
    client.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": payment_method_id}})
    sub = plain(client.v1.subscriptions.create({
        "customer": customer_id,
        "items": [{"price": price_id}],
        "default_payment_method": payment_method_id,
        "metadata": {mapping.USER_ID_KEY: user_id},
        "payment_behavior": "allow_incomplete",
        "expand": SUBSCRIPTION_EXPAND,
    }))
    requires_action, client_secret = False, None
    if sub.get("status") == "incomplete":
        intent = _first_payment_intent(mapping.obj_id(sub.get("latest_invoice")))
        if intent is not None and intent.get("status") == "requires_payment_method":
            client.v1.subscriptions.cancel(sub["id"])
            error = intent.get("last_payment_error") or {}
            raise ApiError(error.get("message") or "The payment was declined.",
                           code=error.get("code") or "card_declined",
                           status_code=status.HTTP_402_PAYMENT_REQUIRED,
                           details={"decline_code": error.get("decline_code")})
        requires_action = True
        client_secret = intent.get("client_secret") if intent else None
    row = _apply(sub, f"stripe subscription started by {actor}")
    return StartedSubscription(subscription=row, requires_action=requires_action, client_secret=client_secret)


def _first_payment_intent(invoice_id: str | None) -> dict | None:
    if not invoice_id:
        return None
    payments = plain(get_client().v1.invoice_payments.list(
        {"invoice": invoice_id, "limit": 1, "expand": ["data.payment.payment_intent"]}))
    for payment in payments.get("data") or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if isinstance(intent, dict):
            return intent
    return None


def _apply(sub: dict, ref: str) -> Subscription:
    """What Stripe answered is the state now: applied at once, without waiting for its events."""
    snapshot = StripeAdapter().snapshot(sub, timezone.now())
    result = apply_snapshot(snapshot, Cause(CauseKind.API, ref=ref))
    catalogue.products_upsert_from_subscription(subscription=sub)
    return Subscription.objects.get(pk=result.subscription_id)


@dataclass(frozen=True)
class SessionLink:
    id: str
    url: str


def checkout_session_create(*, user_id: str, price_id: str, success_url: str, cancel_url: str) -> SessionLink:
    """Stripe's hosted page instead of our own form. The user is named three ways (customer, the
    session's client_reference_id, the subscription's metadata) so no event can lose them."""
    customer_id = customer_for_user(user_id=user_id)
    session = get_client().v1.checkout.sessions.create({
        "mode": "subscription",
        "customer": customer_id,
        "client_reference_id": user_id,
        "line_items": [{"price": price_id, "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": {mapping.USER_ID_KEY: user_id},
        "subscription_data": {"metadata": {mapping.USER_ID_KEY: user_id}},
    })
    return SessionLink(id=session.id, url=session.url)


def portal_session_create(*, user_id: str, return_url: str | None) -> SessionLink:
    """A link to Stripe's customer portal (payment methods, invoices, cancel), for a user who has a customer."""
    customer_id = (Subscriber.objects.filter(external_id=user_id, stripe_customer_id__isnull=False)
                   .values_list("stripe_customer_id", flat=True).first())
    if not customer_id:
        raise ApiError("This user has no Stripe customer yet: subscribe first.", code="no_stripe_customer",
                       status_code=status.HTTP_404_NOT_FOUND)
    params = {"customer": customer_id}
    if return_url:
        params["return_url"] = return_url
    session = get_client().v1.billing_portal.sessions.create(params)
    return SessionLink(id=session.id, url=session.url)

