"""The Stripe package's own writes, beyond the one write path (billing.apply), which every
subscription state still goes through:

- the product catalogue: each Stripe Price is a billing Product (store_product_id = the price id) for
  staff to map to entitlements; the entitlement mapping staff made is never touched here;
- the dj-stripe mirror: Stripe's own objects copied into dj-stripe's tables for the admin. A copy for
  people to look at, never read to decide access; dj-stripe re-retrieves each object from Stripe;
- web subscriptions, the operations behind /api/stripe/*: the customer is created once per subscriber
  (its id is the subscriber's `stripe_customer_id`) and reused; every subscription carries
  `metadata.user_id`, so its events name the user whatever route it was bought through.

And `subscription_state`, the one way a Stripe subscription object becomes a Snapshot here (the pure
mapping plus our revocation rule, which reads what we stored)."""

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from hashlib import sha256
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.http import is_same_domain

from accounts.models import Subscriber
from accounts.services import subscriber_get_or_create, subscriber_set_identity
from billing import money
from billing.apply import ApplyResult, apply_snapshot
from billing.models import Product, Subscription
from billing.providers.base import InvalidPurchase, PaymentDeclined, read_once_in_group
from billing.providers.common import SubscriptionNotFound
from billing.providers.staff_changes import (
    FIX_PERMISSION,
    REFUND_PERMISSION,
    StoreActionError,
    apply_after_store_action,
    ensure_allowed,
    ensure_provider,
    staff_cause,
)
from billing.snapshots import Cause, CauseKind, Provider, Snapshot
from billing.statuses import Status

from . import client, mapping, selectors
from .mapping import Price, parse_price

# --- Snapshots ---------------------------------------------------------------------------------


def subscription_state(sub: dict, observed_at: datetime, *, user_id: str | None = None, status: str | None = None,
                       transactions=(), extra_raw: dict | None = None, note: str = "") -> Snapshot:
    """The subscription's state (mapping.subscription_snapshot); a refund or dispute that revoked access
    stays in force until a newer invoice (a new payment) replaces the one it was for."""
    extra_raw = dict(extra_raw or {})
    if status is None:
        # Our own state, which a drain group's parse does not change: read once per group.
        revoked_for = read_once_in_group(("stripe", "revoked-for", sub["id"]),
                                         partial(selectors.revoked_for_invoice, sub["id"]))
        if revoked_for and revoked_for == mapping.obj_id(sub.get("latest_invoice")):
            status = Status.REVOKED
            extra_raw[selectors.REVOKED_FOR_INVOICE] = revoked_for
            note = "; ".join(p for p in (note, f"kept REVOKED: invoice {revoked_for} was refunded or disputed") if p)
    return mapping.subscription_snapshot(sub, observed_at=observed_at, user_id=user_id, status=status,
                                         transactions=tuple(t for t in transactions if t is not None),
                                         extra_raw=extra_raw, note=note)


# --- What can be bought, and where Stripe may send the buyer back ------------------------------

class PriceNotOffered(InvalidPurchase):
    """A price that is not on sale here (not marked offered, not in STRIPE_OFFERED_PRICES): 400."""

    def __init__(self, price_id: str):
        self.details = {"price_id": price_id}
        super().__init__(f"The price {price_id!r} is not offered: only prices marked offered in the catalogue "
                         "(or listed in STRIPE_OFFERED_PRICES) can be bought.", code="price_not_offered")


class ReturnUrlNotAllowed(InvalidPurchase):
    """A Checkout or portal return URL pointing somewhere we do not own (phishing through our Checkout): 400."""

    def __init__(self, field: str, reason: str):
        self.details = {"field": field}
        super().__init__(f"{field} {reason}", code="return_url_not_allowed")


def price_ensure_offered(price_id: str) -> None:
    """Checked before anything is sent to Stripe (no customer is created for a refused request)."""
    if not selectors.price_is_offered(price_id):
        raise PriceNotOffered(price_id)


def return_url_allowed_hosts() -> list[str]:
    """STRIPE_RETURN_URL_ALLOWED_HOSTS, or ALLOWED_HOSTS when it is empty; a bare `*` never counts."""
    hosts = settings.STRIPE_RETURN_URL_ALLOWED_HOSTS or settings.ALLOWED_HOSTS
    return [h.strip().lower() for h in hosts if h.strip() and h.strip() != "*"]


def return_url_ensure_allowed(field: str, url: str) -> None:
    """An http(s) URL on an allowed host (`.example.com` = the domain and its subdomains). No user info
    and no backslash: browsers read `https://evil.test\\@app.example.com` as a URL on evil.test."""
    try:
        parts = urlsplit(url)
        hostname = (parts.hostname or "").rstrip(".")
    except ValueError:
        raise ReturnUrlNotAllowed(field, "is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not hostname or "\\" in url or "@" in parts.netloc:
        raise ReturnUrlNotAllowed(field, "must be a plain http(s) URL (no user info, no backslash).")
    host = f"[{hostname}]" if ":" in hostname else hostname
    if not any(is_same_domain(host, pattern) for pattern in return_url_allowed_hosts()):
        raise ReturnUrlNotAllowed(field, f"points to {host!r}, which is not in STRIPE_RETURN_URL_ALLOWED_HOSTS.")


# --- The product catalogue ---------------------------------------------------------------------

def _product_values(price: Price) -> dict:
    return {
        "label": price.label[:255],
        "period_unit": price.period_unit or "",
        "period_value": price.interval_count if price.period_unit else None,
        "price_minor": price.unit_amount,
        "currency": price.currency,
    }


def product_upsert_from_price(*, price: Price) -> Product:
    values = _product_values(price)
    key = {"provider": Provider.STRIPE, "store_product_id": price.id}
    try:
        with transaction.atomic():
            product, created = Product.objects.get_or_create(**key, defaults=values)
    except IntegrityError:  # a concurrent creator won
        product, created = Product.objects.get(**key), False
    if not created:
        if not price.product_name and product.label:
            values.pop("label")  # the price came without its product expanded: keep the better label
        Product.objects.filter(pk=product.pk).update(**values)
        product.refresh_from_db()
    return product


def products_upsert_from_subscription(*, subscription: dict) -> list[Product]:
    """The prices a subscription object carries (expanded with their product, for the label)."""
    products = []
    for item in (subscription.get("items") or {}).get("data") or []:
        price = item.get("price")
        if isinstance(price, dict) and price.get("id"):
            products.append(product_upsert_from_price(price=parse_price(price)))
    return products


# The event path's catalogue upkeep (`products_sync_from_subscription`): every subscription event carries
# its prices, which almost never change. Prices this process found or wrote as they are, by price id:
# (when, the values compared). An entry is trusted for CATALOGUE_SEEN_SECONDS, so a change made by another
# process or by hand is looked at again soon; a price with other values than remembered is looked at at once.
CATALOGUE_SEEN_SECONDS = 300.0
CATALOGUE_SEEN_MAX = 10_000
_catalogue_seen: dict[str, tuple[float, dict]] = {}


def _compared(price: Price) -> dict:
    """What must match for a price to need no write: a price without its product expanded keeps the
    stored label (product_upsert_from_price)."""
    values = _product_values(price)
    if not price.product_name:
        values.pop("label")
    return values


def products_sync_from_subscription(*, subscription: dict) -> int:
    """The prices a subscription event carries, written only when one is unknown to us or differs from
    the Product we hold: no query for a price this process saw as it is lately, else one SELECT for
    them all. Returns how many were written."""
    prices = [parse_price(item["price"]) for item in (subscription.get("items") or {}).get("data") or []
              if isinstance(item.get("price"), dict) and item["price"].get("id")]
    now = time.monotonic()
    todo = []
    for price in prices:
        seen = _catalogue_seen.get(price.id)
        if not (seen and now - seen[0] < CATALOGUE_SEEN_SECONDS and seen[1] == _compared(price)):
            todo.append(price)
    if not todo:
        return 0
    stored = {p.store_product_id: p for p in Product.objects.filter(
        provider=Provider.STRIPE, store_product_id__in=[p.id for p in todo])}
    if len(_catalogue_seen) > CATALOGUE_SEEN_MAX:
        _catalogue_seen.clear()
    written = 0
    for price in todo:
        compared = _compared(price)
        product = stored.get(price.id)
        if product is None or any(getattr(product, k) != v for k, v in compared.items()):
            product_upsert_from_price(price=price)
            written += 1
        _catalogue_seen[price.id] = (now, compared)
    return written


def products_upsert_from_event(*, obj: dict) -> None:
    """A price.* or product.* event's object: Stripe's current copy of the price (or of every price of
    the product). Without the API key the event's own copy is all there is (a product's prices cannot
    be listed)."""
    has_key = bool(settings.STRIPE_SECRET_KEY)
    if obj.get("object") == "price":
        price = None
        if has_key:
            try:
                price = client.price_get(obj["id"])
            except SubscriptionNotFound:
                price = None
        product_upsert_from_price(price=parse_price(price or obj))
    elif obj.get("object") == "product" and has_key:
        for price in client.prices_list(product=obj["id"]).get("data") or []:
            price["product"] = obj
            product_upsert_from_price(price=parse_price(price))


# --- The dj-stripe mirror ----------------------------------------------------------------------

def event_mirror(*, event: dict) -> None:
    """Feed an already-verified event to dj-stripe (idempotent on the event id)."""
    from djstripe.models import Event  # imported late: dj-stripe's models are heavy

    client.configure_library()
    with client.translated_errors():
        Event.process(data=event, api_key=settings.STRIPE_SECRET_KEY)


def subscription_mirror(*, subscription: dict) -> None:
    """Sync one subscription (as the backfill lists them) into dj-stripe."""
    from djstripe.models import Subscription as MirroredSubscription  # imported late: heavy, as above

    client.configure_library()
    with client.translated_errors():
        MirroredSubscription.sync_from_stripe_data(client.subscription_object(subscription),
                                                   api_key=settings.STRIPE_SECRET_KEY)


# --- Web subscriptions (/api/stripe/*) ---------------------------------------------------------

def customer_for_user(*, user_id: str, email: str = "") -> str:
    """The subscriber's Stripe customer, created on first use."""
    subscriber = subscriber_get_or_create(external_id=user_id, email=email)
    if subscriber.stripe_customer_id:
        return subscriber.stripe_customer_id
    params = {"metadata": {mapping.USER_ID_KEY: subscriber.external_id}}
    if subscriber.email:
        params["email"] = subscriber.email
    customer = client.customer_create(params, idempotency_key=customer_idempotency_key(subscriber.external_id))
    if not subscriber_set_identity(subscriber=subscriber, field=mapping.CUSTOMER_IDENTITY, value=customer["id"]):
        return Subscriber.objects.get(pk=subscriber.pk).stripe_customer_id or customer["id"]
    return customer["id"]


def customer_idempotency_key(external_id: str) -> str:
    """The key that makes two concurrent first calls create one customer, not two. A hash of the user id:
    it travels in an HTTP header (Latin-1 only, and Stripe takes at most 255 characters), user ids need not."""
    return f"billing-customer-{sha256(external_id.encode()).hexdigest()}"


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
    intent = client.setup_intent_create({
        "customer": customer_id, "usage": "off_session", "payment_method_types": ["card"],
        "metadata": {mapping.USER_ID_KEY: user_id}})
    return SetupIntentResult(setup_intent_id=intent["id"], client_secret=intent["client_secret"],
                             customer_id=customer_id, status=intent["status"],
                             requires_action=intent["status"] == "requires_action")


@dataclass(frozen=True)
class StartedSubscription:
    subscription: Subscription
    requires_action: bool
    client_secret: str | None


def subscription_start(*, user_id: str, price_id: str, payment_method_id: str, actor: str) -> StartedSubscription:
    """Subscribe with a saved payment method. The first invoice is charged at once: paid → the
    subscription is live now; needs 3-D Secure → `requires_action` and the client secret to confirm;
    declined → PaymentDeclined with Stripe's message (and the incomplete subscription is canceled at Stripe).
    Only an offered price (PriceNotOffered otherwise, before anything is sent to Stripe)."""
    price_ensure_offered(price_id)
    customer_id = customer_for_user(user_id=user_id)
    client.payment_method_attach(payment_method_id, customer=customer_id)
    client.customer_update(customer_id, {"invoice_settings": {"default_payment_method": payment_method_id}})
    sub = client.subscription_create({
        "customer": customer_id,
        "items": [{"price": price_id}],
        "default_payment_method": payment_method_id,
        "metadata": {mapping.USER_ID_KEY: user_id},
        "payment_behavior": "allow_incomplete",
    })
    requires_action, client_secret = False, None
    if sub.get("status") == "incomplete":
        intent = _first_payment_intent(mapping.obj_id(sub.get("latest_invoice")))
        if intent is not None and intent.get("status") == "requires_payment_method":
            client.subscription_cancel(sub["id"])
            error = intent.get("last_payment_error") or {}
            raise PaymentDeclined(error.get("message") or "The payment was declined.",
                                  code=error.get("code") or "card_declined", decline_code=error.get("decline_code"))
        requires_action = True
        client_secret = intent.get("client_secret") if intent else None
    row = _apply(sub, f"stripe subscription started by {actor}")
    return StartedSubscription(subscription=row, requires_action=requires_action, client_secret=client_secret)


def _first_payment_intent(invoice_id: str | None) -> dict | None:
    if not invoice_id:
        return None
    payments = client.invoice_payments_list(invoice=invoice_id, expand=("data.payment.payment_intent",))
    for payment in payments.get("data") or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if isinstance(intent, dict):
            return intent
    return None


def _apply(sub: dict, ref: str) -> Subscription:
    """What Stripe answered is the state now: applied at once, without waiting for its events."""
    result = apply_snapshot(subscription_state(sub, timezone.now()), Cause(CauseKind.API, ref=ref))
    products_upsert_from_subscription(subscription=sub)
    return Subscription.objects.get(pk=result.subscription_id)


@dataclass(frozen=True)
class SessionLink:
    id: str
    url: str


def checkout_session_create(*, user_id: str, price_id: str, success_url: str, cancel_url: str) -> SessionLink:
    """Stripe's hosted page instead of our own form. The user is named three ways (customer, the
    session's client_reference_id, the subscription's metadata) so no event can lose them. Only an offered
    price, and return URLs on our own hosts; checked before anything is sent to Stripe."""
    price_ensure_offered(price_id)
    return_url_ensure_allowed("success_url", success_url)
    return_url_ensure_allowed("cancel_url", cancel_url)
    customer_id = customer_for_user(user_id=user_id)
    session = client.checkout_session_create({
        "mode": "subscription",
        "customer": customer_id,
        "client_reference_id": user_id,
        "line_items": [{"price": price_id, "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": {mapping.USER_ID_KEY: user_id},
        "subscription_data": {"metadata": {mapping.USER_ID_KEY: user_id}},
    })
    return SessionLink(id=session["id"], url=session["url"])


def portal_session_create(*, user_id: str, return_url: str | None) -> SessionLink | None:
    """A link to Stripe's customer portal (payment methods, invoices, cancel); None when the user has no
    Stripe customer yet. Without a return URL Stripe uses the portal's configured default."""
    if return_url:
        return_url_ensure_allowed("return_url", return_url)
    customer_id = selectors.customer_id_for_user(user_id)
    if not customer_id:
        return None
    params = {"customer": customer_id}
    if return_url:
        params["return_url"] = return_url
    session = client.portal_session_create(params)
    return SessionLink(id=session["id"], url=session["url"])


# --- Staff actions at Stripe (billing/providers/stripe/admin.py) ---------------------------------

CANCEL_WHEN = ("now", "period_end")


def _stripe(subscription: Subscription) -> None:
    ensure_provider(subscription, Provider.STRIPE, "Stripe")


def _reread(subscription: Subscription, *, status: str | None = None, transactions=(), note: str = "",
            extra_raw: dict | None = None):
    return lambda: subscription_state(client.subscription_get(subscription.provider_subscription_id), timezone.now(),
                                      status=status, transactions=transactions, note=note, extra_raw=extra_raw)


def subscription_cancel_at_stripe(*, subscription: Subscription, when: str, reason: str, staff_user) -> ApplyResult:
    """Cancel now (access ends at once: Stripe's status canceled → EXPIRED here) or at period end (no
    renewal; access until what was paid for ends: CANCELED). Stripe refunds nothing either way."""
    _stripe(subscription)
    ensure_allowed(staff_user, FIX_PERMISSION)
    if when not in CANCEL_WHEN:
        raise StoreActionError(f"Cancel must be one of {', '.join(CANCEL_WHEN)}.")
    what = "canceled now at Stripe" if when == "now" else "set to cancel at period end at Stripe"
    cause = staff_cause(reason, staff_user, what)
    subscription_id = subscription.provider_subscription_id
    if when == "now":
        client.subscription_cancel(subscription_id)
    else:
        client.subscription_update(subscription_id, {"cancel_at_period_end": True})
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action=f"store_cancel_{when}",
                                    reason=reason, cause=cause, details={"provider": "stripe", "when": when},
                                    reread=_reread(subscription))


@dataclass(frozen=True)
class Refundable:
    """The latest paid invoice of a subscription and what of its charge can still be refunded."""

    invoice_id: str
    charge_id: str
    currency: str
    paid_minor: int
    refunded_minor: int

    @property
    def refundable_minor(self) -> int:
        return max(self.paid_minor - self.refunded_minor, 0)


def latest_paid_invoice(*, subscription: Subscription) -> Refundable:
    """Stripe's current API reaches an invoice's money through its payments: invoice → invoice payment →
    payment intent → its latest charge (the charge carries amount and amount_refunded)."""
    _stripe(subscription)
    invoices = client.invoices_list(subscription=subscription.provider_subscription_id, status="paid").get("data")
    if not invoices:
        raise StoreActionError("Stripe has no paid invoice for this subscription: nothing to refund.")
    invoice = invoices[0]
    payments = client.invoice_payments_list(invoice=invoice["id"], expand=("data.payment.payment_intent",))
    charge_id = None
    for payment in payments.get("data") or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        charge_id = mapping.obj_id(intent.get("latest_charge")) if isinstance(intent, dict) else None
        charge_id = charge_id or mapping.obj_id((payment.get("payment") or {}).get("charge"))
        if charge_id:
            break
    if not charge_id:
        raise StoreActionError(f"Invoice {invoice['id']} was paid without a card charge (e.g. from the customer's "
                               "balance): refund it in Stripe's dashboard.")
    charge = client.charge_get(charge_id)
    return Refundable(invoice_id=invoice["id"], charge_id=charge_id, currency=(charge.get("currency") or "").upper(),
                      paid_minor=charge.get("amount_captured") or charge.get("amount") or 0,
                      refunded_minor=charge.get("amount_refunded") or 0)


def invoice_refund_at_stripe(*, subscription: Subscription, amount: Decimal | None, reason: str,
                             staff_user) -> ApplyResult:
    """Refund the latest paid invoice, in full (`amount` None) or in part (major units, at most what is
    still refundable). Then the charge and its refunds are re-read: the refunds are recorded, and a full
    refund of the current period's invoice revokes access (the rule Stripe's charge.refunded follows
    here too; a partial refund is a goodwill gesture and leaves access as it is). The idempotency key
    names the charge, what was refunded before and the amount: a form sent twice refunds once."""
    _stripe(subscription)
    ensure_allowed(staff_user, REFUND_PERMISSION)
    cause_reason = (reason or "").strip()
    target = latest_paid_invoice(subscription=subscription)
    if target.refundable_minor <= 0:
        raise StoreActionError(f"Invoice {target.invoice_id} is already fully refunded.")
    if amount is None:
        minor = target.refundable_minor
    else:
        if amount <= 0:
            raise StoreActionError("The amount to refund must be more than zero.")
        minor = money.to_minor(amount, target.currency)
        if Decimal(minor) != amount * (10 ** money.exponent(target.currency)):
            raise StoreActionError(f"{amount} has more decimals than {target.currency} allows.")
        if minor > target.refundable_minor:
            raise StoreActionError(
                f"At most {money.format_minor(target.refundable_minor, target.currency)} can be refunded of invoice "
                f"{target.invoice_id} ({money.format_minor(target.paid_minor, target.currency)} paid, "
                f"{money.format_minor(target.refunded_minor, target.currency)} refunded already).")
    shown = money.format_minor(minor, target.currency)
    cause = staff_cause(cause_reason, staff_user, f"refunded {shown} of invoice {target.invoice_id} at Stripe")
    refund = client.refund_create(
        charge=target.charge_id, amount=minor,
        metadata={"staff_user": staff_user.get_username(), "subscription": subscription.provider_subscription_id},
        idempotency_key=f"billing-staff-refund-{target.charge_id}-{target.refunded_minor}-{minor}")

    def reread() -> Snapshot:
        charge = client.charge_get(target.charge_id)
        refunds = client.refunds_list(charge=target.charge_id).get("data") or []
        sub = client.subscription_get(subscription.provider_subscription_id)
        current = mapping.obj_id(sub.get("latest_invoice")) == target.invoice_id
        revoke = mapping.charge_fully_refunded(charge) and current
        note = (f"charge {target.charge_id} fully refunded: access revoked" if revoke else
                f"charge {target.charge_id} refunded ({charge.get('amount_refunded')} of {charge.get('amount')})")
        return subscription_state(sub, timezone.now(), status=Status.REVOKED if revoke else None,
                                  transactions=mapping.refund_transactions(charge, refunds), note=note,
                                  extra_raw={selectors.REVOKED_FOR_INVOICE: target.invoice_id} if revoke else None)

    details = {"provider": "stripe", "invoice": target.invoice_id, "charge": target.charge_id,
               "refund": refund.get("id"), "amount_minor": minor, "currency": target.currency,
               "full": minor == target.refundable_minor}
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action="store_refund",
                                    reason=cause_reason, cause=cause, details=details, reread=reread)
