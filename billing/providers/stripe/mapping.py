"""Stripe objects (plain dicts, as client.py or a webhook body gives them) → Snapshots: pure functions
(no ORM, no network, no settings). The entry point is `subscription_snapshot`.

Both shapes are read: the current API (periods on `items.data[]`, invoices linked through
`parent.subscription_details`) and the pre-2025-03-31 one (top-level `current_period_end`,
`invoice.subscription`, `charge.invoice`), because an endpoint pinned to an old version still sends it."""

from dataclasses import dataclass
from datetime import datetime

from billing.providers import common
from billing.providers.common import datetime_from_seconds
from billing.snapshots import Environment, OfferKind, Provider, Snapshot, TransactionKind, TransactionRecord
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


def invoice_paid_payment(invoice: dict) -> dict | None:
    """The `payment` (its type, and the payment intent or charge) that paid an invoice whose `payments`
    were expanded: the paid one, else the newest (Stripe lists them newest first)."""
    payments = (invoice.get("payments") or {}).get("data") or []
    paid = next((p for p in payments if p.get("status") == "paid"), payments[0] if payments else None)
    return (paid or {}).get("payment") or None


def _invoice_line(invoice: dict) -> dict:
    """The subscription's line of an invoice (the service period and the price it pays for)."""
    lines = (invoice.get("lines") or {}).get("data") or []
    for line in lines:
        if ((line.get("parent") or {}).get("subscription_item_details") or {}) and not _proration(line):
            return line
    return lines[0] if lines else {}


def _proration(line: dict) -> bool:
    return bool((((line.get("parent") or {}).get("subscription_item_details") or {}).get("proration"))
                or line.get("proration"))


def _line_price(line: dict) -> str:
    details = (line.get("pricing") or {}).get("price_details") or {}  # API versions from 2025-03-31
    return obj_id(details.get("price")) or obj_id(line.get("price")) or ""


def balance_details(balance_transactions: list[dict | str | None]) -> dict:
    """Fee and net (as Stripe states them: net is negative for money out) from expanded balance
    transactions; empty when Stripe has not made them yet or they were not expanded."""
    expanded = [b for b in balance_transactions if isinstance(b, dict) and b.get("currency")]
    if not expanded:
        return {}
    return {"fee_minor": sum(b.get("fee") or 0 for b in expanded),
            "net_minor": sum(b.get("net") or 0 for b in expanded),
            "settlement_currency": expanded[0]["currency"].upper()}


def _country(invoice: dict, charge: dict | None) -> str:
    address = invoice.get("customer_address") or {}
    if address.get("country"):
        return address["country"]
    return (((charge or {}).get("billing_details") or {}).get("address") or {}).get("country") or ""


def invoice_transaction(invoice: dict, charge: dict | None = None) -> TransactionRecord | None:
    """A paid invoice is money in: the first one a purchase, later ones renewals. Zero-amount
    invoices (trial starts, fully discounted periods) move no money and are not recorded. `charge`:
    the charge that paid it, with its balance transaction expanded (fee and net), when it was read."""
    amount = invoice.get("amount_paid") or 0
    if amount <= 0 or not invoice.get("id"):
        return None
    first = invoice.get("billing_reason") == "subscription_create"
    kind = TransactionKind.PURCHASE if first else TransactionKind.RENEWAL
    paid_at = (invoice.get("status_transitions") or {}).get("paid_at") or invoice.get("created")
    line = _invoice_line(invoice)
    period = line.get("period") or {}
    charge_id = obj_id((charge or {}).get("id")) or obj_id(invoice.get("charge")) or ""
    return TransactionRecord(
        provider_transaction_id=invoice["id"], kind=kind, occurred_at=datetime_from_seconds(paid_at),
        amount_minor=amount, currency=(invoice.get("currency") or "").upper(),
        raw={"invoice": invoice["id"], "billing_reason": invoice.get("billing_reason"),
             "payment_intent": obj_id(invoice.get("payment_intent")) or obj_id((charge or {}).get("payment_intent")),
             "charge": charge_id or None},
        order_id=invoice["id"], charge_id=charge_id, period_start=datetime_from_seconds(period.get("start")),
        period_end=datetime_from_seconds(period.get("end")), country=_country(invoice, charge),
        offer_kind=OfferKind.PROMOTIONAL if invoice.get("discounts") or invoice.get("discount") else "",
        store_product_id=_line_price(line), **balance_details([(charge or {}).get("balance_transaction")]))


def refund_transactions(charge: dict, refunds: list[dict], *, invoice_id: str = "") -> tuple[TransactionRecord, ...]:
    """One refund Transaction per Stripe Refund (a charge can be refunded in several parts)."""
    records = []
    for refund in refunds:
        if refund.get("status") in ("failed", "canceled") or not refund.get("id"):
            continue
        records.append(TransactionRecord(
            provider_transaction_id=refund["id"], kind=TransactionKind.REFUND,
            occurred_at=datetime_from_seconds(refund.get("created")), amount_minor=refund.get("amount"),
            currency=(refund.get("currency") or charge.get("currency") or "").upper(),
            raw={"refund": refund["id"], "charge": charge.get("id"), "reason": refund.get("reason")},
            order_id=invoice_id or "", charge_id=charge.get("id") or "", refers_to=invoice_id or "",
            **balance_details([refund.get("balance_transaction")])))
    return tuple(records)


def dispute_transaction(dispute: dict, *, invoice_id: str = "") -> TransactionRecord:
    """A chargeback; the dispute carries its balance transactions (the amount and Stripe's dispute fee)."""
    return TransactionRecord(
        provider_transaction_id=dispute["id"], kind=TransactionKind.CHARGEBACK,
        occurred_at=datetime_from_seconds(dispute.get("created")),
        amount_minor=dispute.get("amount"), currency=(dispute.get("currency") or "").upper(),
        raw={"dispute": dispute["id"], "charge": obj_id(dispute.get("charge")), "reason": dispute.get("reason"),
             "status": dispute.get("status")},
        order_id=invoice_id or "", charge_id=obj_id(dispute.get("charge")) or "", refers_to=invoice_id or "",
        **balance_details(list(dispute.get("balance_transactions") or [])))


def dispute_won_transaction(dispute: dict, *, invoice_id: str = "") -> TransactionRecord | None:
    """A dispute closed in our favour: the money comes back (the chargeback reversed)."""
    if dispute.get("status") != "won" or not dispute.get("id"):
        return None
    reinstated = [b for b in dispute.get("balance_transactions") or []
                  if isinstance(b, dict) and (b.get("amount") or 0) > 0]
    return TransactionRecord(
        provider_transaction_id=f"{dispute['id']}:won", kind=TransactionKind.REFUND_REVERSED,
        occurred_at=datetime_from_seconds((reinstated[-1] if reinstated else {}).get("created")
                                          or dispute.get("created")),
        amount_minor=dispute.get("amount"), currency=(dispute.get("currency") or "").upper(),
        raw={"dispute": dispute["id"], "charge": obj_id(dispute.get("charge")), "status": "won"},
        order_id=invoice_id or "", charge_id=obj_id(dispute.get("charge")) or "", refers_to=invoice_id or "",
        **balance_details(reinstated))


def charge_fully_refunded(charge: dict) -> bool:
    return bool(charge.get("refunded")) or (charge.get("amount_refunded") or 0) >= (charge.get("amount") or 1)
