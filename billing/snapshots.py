"""The provider-independent snapshot: what an adapter hands to the one write path.

Adapters parse their store's payloads into these; services never read raw provider dicts."""

from dataclasses import dataclass, field
from datetime import datetime

from .statuses import Status


class Provider:
    STRIPE = "stripe"
    APPLE = "apple"
    GOOGLE = "google"
    XSOLLA = "xsolla"
    MANUAL = "manual"
    ALL = (STRIPE, APPLE, GOOGLE, XSOLLA, MANUAL)
    CHOICES = [(STRIPE, "Stripe"), (APPLE, "Apple App Store"), (GOOGLE, "Google Play"),
               (XSOLLA, "Xsolla"), (MANUAL, "Manual (staff)")]
    # Providers whose subscriptions the user manages in the store, not through us.
    STORE_MANAGED = (APPLE, GOOGLE)


class Environment:
    PRODUCTION = "production"
    SANDBOX = "sandbox"
    CHOICES = [(PRODUCTION, "Production"), (SANDBOX, "Sandbox")]


class PeriodUnit:
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"
    CHOICES = [(DAY, "day"), (WEEK, "week"), (MONTH, "month"), (YEAR, "year")]


class TransactionKind:
    PURCHASE = "purchase"
    RENEWAL = "renewal"
    REFUND = "refund"
    CHARGEBACK = "chargeback"
    REFUND_REVERSED = "refund_reversed"  # a refund or chargeback undone: money back in (e.g. a dispute won)
    CHOICES = [(PURCHASE, "purchase"), (RENEWAL, "renewal"), (REFUND, "refund"), (CHARGEBACK, "chargeback"),
               (REFUND_REVERSED, "refund reversed")]
    OUTGOING = (REFUND, CHARGEBACK)


class OfferKind:
    """The offer a payment was made under, where the store says it."""

    INTRODUCTORY = "introductory"  # a discounted first period (pay as you go / up front)
    FREE_TRIAL = "free_trial"
    PROMOTIONAL = "promotional"  # a promotional offer or coupon
    OFFER_CODE = "offer_code"  # Apple offer codes, Google promo codes
    CHOICES = [("", "none"), (INTRODUCTORY, "introductory"), (FREE_TRIAL, "free trial"),
               (PROMOTIONAL, "promotional"), (OFFER_CODE, "offer code")]


class CauseKind:
    WEBHOOK = "webhook"
    POLL = "poll"
    VERIFICATION = "verification"
    STAFF = "staff"
    BEAT = "beat"
    BACKFILL = "backfill"
    API = "api"
    CHOICES = [(WEBHOOK, "webhook event"), (POLL, "re-poll of the store"), (VERIFICATION, "purchase verification"),
               (STAFF, "staff member"), (BEAT, "scheduled job"), (BACKFILL, "backfill / import"),
               (API, "API call")]


@dataclass(frozen=True)
class Cause:
    """Why a snapshot is applied: recorded on every status change."""

    kind: str
    ref: str = ""  # e.g. the WebhookEvent id, the job name
    staff_user_id: int | None = None
    note: str = ""
    # The store read that produced the snapshot (billing.models.Drift.FoundBy: repoll, reconciliation,
    # verification, staff_resync): what it changes is recorded as a Drift (billing/drift.py). Empty for a
    # delivered webhook event and for our own changes.
    found_by: str = ""


@dataclass(frozen=True)
class TransactionRecord:
    """One money movement at the store. `provider_transaction_id` is unique per provider."""

    provider_transaction_id: str
    kind: str
    occurred_at: datetime
    amount_minor: int | None = None  # always positive; the kind says the direction
    currency: str = ""
    raw: dict = field(default_factory=dict)
    # The ledger's details, each only where the store says it (docs/finance.md "Columns"); never guessed.
    order_id: str = ""  # the store's order id: Google orderId, Apple transactionId, Stripe invoice, Xsolla
    line_item_id: str = ""  # Apple webOrderLineItemId
    charge_id: str = ""  # Stripe charge id
    period_start: datetime | None = None  # the service period this payment pays for
    period_end: datetime | None = None
    country: str = ""  # ISO 3166 alpha-2, or Apple's storefront (alpha-3) as Apple sends it
    offer_kind: str = ""  # OfferKind
    refers_to: str = ""  # refunds, chargebacks, reversals: the provider_transaction_id of the payment
    store_product_id: str = ""
    fee_minor: int | None = None  # Stripe: from the balance transaction, in settlement_currency
    net_minor: int | None = None
    settlement_currency: str = ""


@dataclass(frozen=True)
class Snapshot:
    """The state of one store subscription as of `observed_at`.

    `observed_at` is the store's time for that state (the event's time, or when we fetched it):
    a snapshot older than what we have already applied is recorded as stale and ignored.
    Optional fields left as None keep what is stored."""

    provider: str
    provider_subscription_id: str
    status: str
    observed_at: datetime
    store_product_id: str = ""
    product_label: str = ""  # the store's own name for the plan; labels a product staff have not named
    # Who: the app's user id when the store carries it, else a store identity (a Subscriber field name
    # and value) to look the subscriber up by. Neither: the existing link stays, or an orphan.
    user_id: str | None = None
    identity_field: str | None = None
    identity_value: str | None = None
    email: str = ""
    environment: str = Environment.PRODUCTION
    period_unit: str | None = None
    period_value: int | None = None
    amount_minor: int | None = None
    upcoming_amount_minor: int | None = None
    currency: str | None = None
    auto_renew: bool | None = None
    started_at: datetime | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    expires_at: datetime | None = None
    grace_until: datetime | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    # The provider id of a subscription this one supersedes (Google linkedPurchaseToken).
    replaces: str | None = None
    # The store refunds unless we acknowledge by then (Google); None: nothing to acknowledge.
    acknowledgement_due_at: datetime | None = None
    acknowledged: bool | None = None
    transactions: tuple[TransactionRecord, ...] = ()
    # Derived by us, not told by the store (e.g. the expiry sweep): applied without advancing
    # last_event_at, so any store state newer than the last one still applies after it.
    derived: bool = False
    raw: dict = field(default_factory=dict)
    note: str = ""

    def __post_init__(self):
        if self.provider not in Provider.ALL:
            raise ValueError(f"unknown provider {self.provider!r}")
        if self.status not in Status.__members__:
            raise ValueError(f"unknown status {self.status!r}")
        if not self.provider_subscription_id:
            raise ValueError("provider_subscription_id is required")
        if self.observed_at.tzinfo is None:
            raise ValueError("observed_at must be timezone-aware")
