"""Stripe objects (plain dicts, as client.py or a webhook body gives them) → Snapshots: pure functions
(no ORM, no network, no settings). The entry point is `subscription_snapshot`.

Both shapes are read: the current API (periods on `items.data[]`, invoices linked through
`parent.subscription_details`) and the pre-2025-03-31 one (top-level `current_period_end`,
`invoice.subscription`, `charge.invoice`), because an endpoint pinned to an old version still sends it."""

from dataclasses import dataclass
from datetime import datetime

from billing.providers import common
from billing.providers.common import datetime_from_seconds
from billing.snapshots import Environment, Provider, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status

USER_ID_KEY = "user_id"  # metadata key carrying the app's user id (subscription, session, customer)
CUSTOMER_IDENTITY = "stripe_customer_id"

def obj_id(value) -> str | None:
    """An id whether the field holds the id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def environment(obj: dict) -> str:
    return Environment.PRODUCTION if obj.get("livemode") else Environment.SANDBOX


@dataclass(frozen=True)
class Price:
    id: str
    product_id: str | None
    product_name: str
    unit_amount: int | None
    currency: str
    interval: str | None
    interval_count: int | None

    @property
    def period_unit(self) -> str | None:
        return common.period_unit(self.interval)

    @property
    def label(self) -> str:
        name = self.product_name or self.product_id or self.id
        if not self.interval:
            return name
        every = self.interval if (self.interval_count or 1) == 1 else f"{self.interval_count} {self.interval}s"
        return f"{name} / {every}"


def parse_price(price: dict) -> Price:
    """A Price (or a legacy Plan, which old payloads carry as `plan`)."""
    product = price.get("product")
    recurring = price.get("recurring") or {}
    interval = recurring.get("interval") or price.get("interval")
    count = recurring.get("interval_count") or price.get("interval_count")
    amount = price.get("unit_amount")
    if amount is None and price.get("object") == "plan":
        amount = price.get("amount")
    return Price(
        id=price["id"], product_id=obj_id(product),
        product_name=(product.get("name") or "") if isinstance(product, dict) else (price.get("nickname") or ""),
        unit_amount=amount, currency=(price.get("currency") or "").upper(),
        interval=interval, interval_count=count)


def _items(sub: dict) -> list[dict]:
    items = sub.get("items") or {}
    return list(items.get("data") or []) if isinstance(items, dict) else []


def subscription_period(sub: dict) -> tuple[datetime | None, datetime | None]:
    """The current period. Current API versions keep it on each item (they can differ with mixed
    intervals: the latest end is when access must last); old ones at the top level."""
    ends = [i["current_period_end"] for i in _items(sub) if i.get("current_period_end")]
    starts = [i["current_period_start"] for i in _items(sub) if i.get("current_period_start")]
    end = max(ends) if ends else sub.get("current_period_end")
    start = min(starts) if starts else sub.get("current_period_start")
    return datetime_from_seconds(start), datetime_from_seconds(end)


def subscription_price(sub: dict) -> tuple[Price | None, int]:
    """The subscription's (first) price and its quantity."""
    for item in _items(sub):
        price = item.get("price") or item.get("plan")
        if isinstance(price, dict) and price.get("id"):
            return parse_price(price), int(item.get("quantity") or 1)
    if isinstance(sub.get("plan"), dict):  # very old single-plan subscriptions
        return parse_price(sub["plan"]), int(sub.get("quantity") or 1)
    return None, 1


def will_not_renew(sub: dict) -> bool:
    return bool(sub.get("cancel_at_period_end")) or bool(sub.get("cancel_at"))


def unified_status(sub: dict) -> str:
    """Stripe's subscription status → ours (docs/providers/stripe.md has the table)."""
    status = sub.get("status")
    if status in ("active", "trialing") and will_not_renew(sub):
        return Status.CANCELED
    return {
        "trialing": Status.TRIAL,
        "active": Status.ACTIVE,
        "past_due": Status.ON_GRACE,  # Stripe is retrying the payment; access is kept meanwhile
        "unpaid": Status.ON_HOLD,
        "paused": Status.PAUSED,
        "canceled": Status.EXPIRED,
        "incomplete_expired": Status.EXPIRED,
        "incomplete": Status.INACTIVE,
    }.get(status, Status.INACTIVE)


def subscription_user_id(sub: dict) -> str | None:
    value = (sub.get("metadata") or {}).get(USER_ID_KEY)
    return str(value).strip() or None if value not in (None, "") else None


def subscription_snapshot(sub: dict, *, observed_at: datetime, user_id: str | None = None,
                          status: str | None = None, transactions: tuple[TransactionRecord, ...] = (),
                          extra_raw: dict | None = None, note: str = "") -> Snapshot:
    """The unified state of one Stripe subscription. `user_id` is a fallback (e.g. the Checkout
    Session's client_reference_id) for when the subscription's own metadata has none."""
    period_start, period_end = subscription_period(sub)
    price, quantity = subscription_price(sub)
    status = status or unified_status(sub)
    cancel_at = datetime_from_seconds(sub.get("cancel_at"))
    trial_end = datetime_from_seconds(sub.get("trial_end"))
    ended_at = datetime_from_seconds(sub.get("ended_at"))

    expires_at = period_end
    if sub.get("status") == "trialing" and trial_end:
        expires_at = trial_end
    if cancel_at and (expires_at is None or cancel_at < expires_at):
        expires_at = cancel_at
    if sub.get("status") in ("canceled", "incomplete_expired"):
        expires_at = ended_at or expires_at
    if sub.get("status") == "incomplete":
        expires_at = None

    customer_id = obj_id(sub.get("customer"))
    raw = {"subscription": sub}
    if extra_raw:
        raw.update(extra_raw)
    return Snapshot(
        provider=Provider.STRIPE,
        provider_subscription_id=sub["id"],
        status=status,
        observed_at=observed_at,
        store_product_id=price.id if price else "",
        user_id=subscription_user_id(sub) or (str(user_id) if user_id not in (None, "") else None),
        identity_field=CUSTOMER_IDENTITY if customer_id else None,
        identity_value=customer_id,
        email=(sub["customer"].get("email") or "") if isinstance(sub.get("customer"), dict) else "",
        environment=environment(sub),
        period_unit=price.period_unit if price else None,
        period_value=price.interval_count if price else None,
        amount_minor=price.unit_amount * quantity if price and price.unit_amount is not None else None,
        currency=price.currency if price and price.currency else None,
        auto_renew=sub.get("status") in ("active", "trialing", "past_due") and not will_not_renew(sub),
        started_at=datetime_from_seconds(sub.get("start_date")) or datetime_from_seconds(sub.get("created")),
        current_period_start=period_start,
        current_period_end=period_end,
        expires_at=expires_at,
        grace_until=period_end if sub.get("status") == "past_due" else None,
        canceled_at=datetime_from_seconds(sub.get("canceled_at")),
        ended_at=ended_at,
        transactions=tuple(transactions),
        raw=raw,
        note=note,
    )


# --- invoices, charges, refunds, disputes ----------------------------------------------------

def invoice_subscription_id(invoice: dict) -> str | None:
    details = ((invoice.get("parent") or {}).get("subscription_details") or {})
    return obj_id(details.get("subscription")) or obj_id(invoice.get("subscription"))


def invoice_transaction(invoice: dict) -> TransactionRecord | None:
    """A paid invoice is money in: the first one a purchase, later ones renewals. Zero-amount
    invoices (trial starts, fully discounted periods) move no money and are not recorded."""
    amount = invoice.get("amount_paid") or 0
    if amount <= 0 or not invoice.get("id"):
        return None
    first = invoice.get("billing_reason") == "subscription_create"
    kind = TransactionKind.PURCHASE if first else TransactionKind.RENEWAL
    paid_at = (invoice.get("status_transitions") or {}).get("paid_at") or invoice.get("created")
    return TransactionRecord(
        provider_transaction_id=invoice["id"], kind=kind, occurred_at=datetime_from_seconds(paid_at),
        amount_minor=amount, currency=(invoice.get("currency") or "").upper(),
        raw={"invoice": invoice["id"], "billing_reason": invoice.get("billing_reason"),
             "payment_intent": obj_id(invoice.get("payment_intent")), "charge": obj_id(invoice.get("charge"))})


def refund_transactions(charge: dict, refunds: list[dict]) -> tuple[TransactionRecord, ...]:
    """One refund Transaction per Stripe Refund (a charge can be refunded in several parts)."""
    records = []
    for refund in refunds:
        if refund.get("status") in ("failed", "canceled") or not refund.get("id"):
            continue
        records.append(TransactionRecord(
            provider_transaction_id=refund["id"], kind=TransactionKind.REFUND,
            occurred_at=datetime_from_seconds(refund.get("created")), amount_minor=refund.get("amount"),
            currency=(refund.get("currency") or charge.get("currency") or "").upper(),
            raw={"refund": refund["id"], "charge": charge.get("id"), "reason": refund.get("reason")}))
    return tuple(records)


def dispute_transaction(dispute: dict) -> TransactionRecord:
    return TransactionRecord(
        provider_transaction_id=dispute["id"], kind=TransactionKind.CHARGEBACK,
        occurred_at=datetime_from_seconds(dispute.get("created")),
        amount_minor=dispute.get("amount"), currency=(dispute.get("currency") or "").upper(),
        raw={"dispute": dispute["id"], "charge": obj_id(dispute.get("charge")), "reason": dispute.get("reason"),
             "status": dispute.get("status")})


def charge_fully_refunded(charge: dict) -> bool:
    return bool(charge.get("refunded")) or (charge.get("amount_refunded") or 0) >= (charge.get("amount") or 1)
