"""The unified subscription model. Written only through the one write path, billing/apply.py."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.models import Subscriber

from .snapshots import CauseKind, Environment, OfferKind, PeriodUnit, Provider, TransactionKind
from .statuses import STATUS_CHOICES, Status, access_ends_at, is_entitled


class Entitlement(models.Model):
    """A named right in the apps ("premium", "no_ads"), granted by products."""

    name = models.CharField(max_length=64, unique=True, validators=[
        RegexValidator(r"^[a-z0-9][a-z0-9_.-]*$", "lowercase letters, digits, '_', '.' and '-'")])
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Product(models.Model):
    """A store's product or price, mapped by staff to the entitlements it grants."""

    provider = models.CharField(max_length=16, choices=Provider.CHOICES)
    store_product_id = models.CharField(max_length=255, help_text="The store's product, plan or price id")
    label = models.CharField(max_length=255, blank=True)
    period_unit = models.CharField(max_length=8, choices=PeriodUnit.CHOICES, blank=True)
    period_value = models.PositiveSmallIntegerField(null=True, blank=True)
    price_minor = models.BigIntegerField(null=True, blank=True, help_text="In the currency's minor units")
    currency = models.CharField(max_length=3, blank=True)
    entitlements = models.ManyToManyField(Entitlement, blank=True, related_name="products")
    # Stripe web purchases: only an offered price can be bought (a synced price is not offered until staff
    # mark it); who changed it last, and when, for the audit.
    offered = models.BooleanField(default=False, help_text="Stripe: can be bought through /api/stripe/* and "
                                                           "change-plan (staff mark it in the admin)")
    offered_changed_at = models.DateTimeField(null=True, blank=True)
    offered_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                           on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "store_product_id"]
        constraints = [models.UniqueConstraint(fields=["provider", "store_product_id"],
                                               name="product_unique_per_provider")]

    def __str__(self):
        return self.label or f"{self.provider}:{self.store_product_id}"

    def clean(self):
        if self.currency and (len(self.currency) != 3 or not self.currency.isalpha()):
            raise ValidationError({"currency": "An ISO 4217 code of three letters, e.g. USD."})
        self.currency = self.currency.upper()
        if bool(self.period_unit) != bool(self.period_value):
            raise ValidationError("Give both the period unit and its value, or neither.")
        if self.price_minor is not None and self.price_minor < 0:
            raise ValidationError({"price_minor": "A price cannot be negative."})


class Subscription(models.Model):
    provider = models.CharField(max_length=16, choices=Provider.CHOICES)
    provider_subscription_id = models.CharField(
        max_length=512, help_text="Stripe sub_…, Apple originalTransactionId, Google purchase token, Xsolla id")
    subscriber = models.ForeignKey(Subscriber, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="subscriptions", help_text="Empty: an orphan waiting for support")
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="subscriptions")
    store_product_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=Status.INACTIVE)
    period_unit = models.CharField(max_length=8, choices=PeriodUnit.CHOICES, blank=True)
    period_value = models.PositiveSmallIntegerField(null=True, blank=True)
    amount_minor = models.BigIntegerField(null=True, blank=True)
    upcoming_amount_minor = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    auto_renew = models.BooleanField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    environment = models.CharField(max_length=16, choices=Environment.CHOICES, default=Environment.PRODUCTION)
    # Superseded by another subscription (Google upgrade/downgrade/resubscribe): never counts twice.
    replaced_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces")
    acknowledgement_due_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True, help_text="Store time of the newest state applied")
    last_verified_at = models.DateTimeField(null=True, blank=True, help_text="Last confirmed with the store")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    raw_snapshot = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Refunding at a store moves money back: granted apart from fixing subscriptions (change_subscription).
        permissions = [("refund_at_store", "Can refund at the store (Stripe, Google, Xsolla)")]
        constraints = [models.UniqueConstraint(fields=["provider", "provider_subscription_id"],
                                               name="subscription_unique_per_provider")]
        indexes = [
            models.Index(fields=["subscriber", "-created_at"], name="subscription_by_subscriber"),
            models.Index(fields=["status", "expires_at"], name="subscription_by_status_expiry"),
            # Support searches a store id alone (the unique constraint leads with the provider).
            models.Index(fields=["provider_subscription_id"], name="subscription_by_store_id"),
            # The re-poll takes the oldest confirmations first.
            models.Index(fields=["last_verified_at"], name="subscription_by_verified"),
            # The reconciliation walks one store's live subscriptions, oldest confirmation first (ended ones
            # stay out of it: years of them must not be scanned by every batch).
            models.Index(fields=["provider", "last_verified_at", "id"], name="subscription_live_by_verified",
                         condition=~models.Q(status__in=["EXPIRED", "REVOKED"])),
            # The expiry sweep: entitled subscriptions by their access end (the later of expiry and grace), so
            # that it reads the lapsed ones only, not every live one (billing/sweeps.py lapsed_subscriptions).
            models.Index(Greatest("expires_at", "grace_until"), name="subscription_entitled_by_end",
                         condition=models.Q(status__in=["ACTIVE", "CANCELED", "ON_GRACE", "TRIAL"])),
            # Google purchases awaiting acknowledgement, soonest deadline first (a few among millions).
            models.Index(fields=["acknowledgement_due_at", "id"], name="subscription_ack_pending",
                         condition=models.Q(acknowledged_at__isnull=True, acknowledgement_due_at__isnull=False)),
            # The daily double-payment sweep: users with two paying subscriptions, counted from this index alone
            # (billing/double_payments.py sweep: its filter is this condition), not from the whole table.
            models.Index(fields=["subscriber", "id"], name="subscription_paying_by_user",
                         condition=models.Q(status__in=["ACTIVE", "CANCELED", "ON_GRACE"], replaced_by__isnull=True,
                                            subscriber__isnull=False) & ~models.Q(provider="manual")),
        ]

    def __str__(self):
        return f"{self.provider}:{self.provider_subscription_id}"

    @property
    def access_ends_at(self):
        return access_ends_at(self.status, self.expires_at, self.grace_until)

    def is_entitled(self, now) -> bool:
        return self.replaced_by_id is None and is_entitled(self.status, self.expires_at, self.grace_until, now)


class StatusChange(models.Model):
    """The history of a subscription: every status change, every snapshot ignored as stale, and (kind
    `state`) every change of what finance reads (price, product, period, expiry, owner) without a status
    change. Each applied row carries the state that came into force, so that the subscription as it
    stood at any past moment is rebuilt from the history alone (billing/history.py, docs/finance.md)."""

    class Kind(models.TextChoices):
        STATUS = "status", "status change or note"  # old_status → new_status, as it always was
        STATE = "state", "state only (price, product, period, expiry; status unchanged)"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="status_changes")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.STATUS)
    old_status = models.CharField(max_length=16, choices=STATUS_CHOICES, blank=True)
    new_status = models.CharField(max_length=16, choices=STATUS_CHOICES)
    occurred_at = models.DateTimeField(help_text="Store time of the state")
    recorded_at = models.DateTimeField(auto_now_add=True)
    cause = models.CharField(max_length=16, choices=CauseKind.CHOICES)
    cause_ref = models.CharField(max_length=255, blank=True, help_text="e.g. the webhook event id")
    staff_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    ignored = models.BooleanField(default=False, help_text="A stale snapshot, recorded and not applied")
    note = models.TextField(blank=True)
    # The state in force after this row (its status is new_status), written by the write path on every
    # applied row; empty on ignored rows (nothing came into force) and on rows older than migration 0005
    # (state_known False: only their status is known).
    state_known = models.BooleanField(default=False)
    subscriber = models.ForeignKey(Subscriber, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    store_product_id = models.CharField(max_length=255, blank=True)
    environment = models.CharField(max_length=16, choices=Environment.CHOICES, blank=True)
    amount_minor = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    period_unit = models.CharField(max_length=8, choices=PeriodUnit.CHOICES, blank=True)
    period_value = models.PositiveSmallIntegerField(null=True, blank=True)
    auto_renew = models.BooleanField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-recorded_at", "-id"]
        indexes = [models.Index(fields=["-recorded_at"], name="statuschange_by_time"),
                   # "as of": a subscription's newest row (finance's rebuilds, billing/history.py)
                   models.Index(fields=["subscription", "-id"], name="statuschange_by_sub_newest"),
                   # finance's day: the rows that start to count in it (known after its start, or true after it)
                   models.Index(fields=["occurred_at"], name="statuschange_by_occurred"),
                   # finance's day: the states whose access ends in it by time passing (finance/metrics.py)
                   models.Index(Greatest("expires_at", "grace_until"), name="statuschange_entitled_by_end",
                                condition=models.Q(new_status__in=["ACTIVE", "CANCELED", "ON_GRACE", "TRIAL"]))]

    def __str__(self):
        flag = " (ignored)" if self.ignored else ""
        return f"{self.old_status or '∅'} → {self.new_status}{flag}"


# The subscription's fields each applied history row copies (billing/apply.py): what "as of" needs.
HISTORY_STATE_FIELDS = ("subscriber_id", "product_id", "store_product_id", "environment", "amount_minor", "currency",
                        "period_unit", "period_value", "auto_renew", "expires_at", "grace_until")


class Transaction(models.Model):
    """The money ledger: one row per money movement. Amounts are positive minor units; the kind gives
    the direction. Rows are written once (by the one write path) and never changed, so an export for a
    past moment can be reproduced (docs/finance.md)."""

    provider = models.CharField(max_length=16, choices=Provider.CHOICES)
    provider_transaction_id = models.CharField(max_length=255)
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="transactions")
    kind = models.CharField(max_length=16, choices=TransactionKind.CHOICES)
    amount_minor = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    occurred_at = models.DateTimeField(help_text="When it happened at the store")
    recorded_at = models.DateTimeField(auto_now_add=True, help_text="When we recorded it (a late refund shows)")
    environment = models.CharField(max_length=16, choices=Environment.CHOICES, default=Environment.PRODUCTION)
    # Each only where the store says it (docs/finance.md "Columns"): empty means not told, never guessed.
    order_id = models.CharField(max_length=255, blank=True,
                                help_text="Google orderId, Apple transactionId, Stripe invoice, Xsolla transaction")
    line_item_id = models.CharField(max_length=255, blank=True, help_text="Apple webOrderLineItemId")
    charge_id = models.CharField(max_length=255, blank=True, help_text="Stripe charge")
    period_start = models.DateTimeField(null=True, blank=True, help_text="The service period it pays for")
    period_end = models.DateTimeField(null=True, blank=True)
    country = models.CharField(max_length=3, blank=True, help_text="ISO 3166 alpha-2, or Apple's storefront")
    offer_kind = models.CharField(max_length=16, choices=OfferKind.CHOICES, blank=True)
    refers_to = models.CharField(max_length=255, blank=True,
                                 help_text="Refunds, chargebacks, reversals: the store id of the payment")
    store_product_id = models.CharField(max_length=255, blank=True)
    fee_minor = models.BigIntegerField(null=True, blank=True, help_text="Stripe: from the balance transaction")
    net_minor = models.BigIntegerField(null=True, blank=True)
    settlement_currency = models.CharField(max_length=3, blank=True, help_text="The currency of fee and net")
    raw = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        permissions = [("export_finance", "Can export finance data (CSV / JSON lines)")]
        constraints = [models.UniqueConstraint(fields=["provider", "provider_transaction_id"],
                                               name="transaction_unique_per_provider")]
        indexes = [models.Index(fields=["occurred_at"], name="transaction_by_time"),
                   # finance's day: the ledger rows recorded in it (a late refund), beside those that occurred in it
                   models.Index(fields=["recorded_at"], name="transaction_by_recorded"),
                   models.Index(fields=["provider_transaction_id"], name="transaction_by_store_id"),
                   models.Index(fields=["order_id"], name="transaction_by_order_id",
                                condition=~models.Q(order_id=""))]

    def __str__(self):
        return f"{self.kind} {self.provider}:{self.provider_transaction_id}"


class Outbox(models.Model):
    """Status changes waiting to reach the Redis stream; written in the same transaction as the change."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subscription = models.ForeignKey(Subscription, null=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    stream_id = models.CharField(max_length=64, blank=True,
                                 help_text="The stream entry id XADD returned, e.g. 1733313600000-0")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "outbox"
        indexes = [models.Index(fields=["id"], name="outbox_unpublished",
                                condition=models.Q(published_at__isnull=True)),
                   # Retention: the published rows past RETENTION_OUTBOX_DAYS, without reading the rest.
                   models.Index(fields=["created_at"], name="outbox_published_by_time",
                                condition=models.Q(published_at__isnull=False))]

    def __str__(self):
        return str(self.event_id)


class DoublePayment(models.Model):
    """One customer paying for the same entitlement through two live paid subscriptions at once (two
    stores, or twice in one store). Found after commit when a subscription is applied and by a daily
    sweep (billing/double_payments.py); staff resolve or dismiss it with a reason, and it ends by itself
    when either subscription stops being live (docs/operations.md "Double payments")."""

    class Status(models.TextChoices):
        OPEN = "open", "open"
        RESOLVED = "resolved", "resolved by staff"
        DISMISSED = "dismissed", "dismissed by staff"
        ENDED = "ended", "ended by itself"

    subscriber = models.ForeignKey(Subscriber, on_delete=models.PROTECT, related_name="double_payments")
    # The lower id first: one row per pair, whichever of the two was applied last.
    first = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+")
    second = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+")
    entitlements = models.JSONField(default=list, help_text="The entitlements both of them grant")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    since = models.DateTimeField(help_text="When the later of the two started: paying twice since then")
    detected_at = models.DateTimeField(help_text="When we noticed (again, after it had ended)")
    detected_by = models.CharField(max_length=32, help_text="write path, verification or sweep")
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    close_reason = models.TextField(blank=True, help_text="Staff's reason, or which subscription stopped being live")

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["first", "second"], name="double_payment_once_per_pair")]
        indexes = [models.Index(fields=["subscriber"], name="double_payment_open",
                                condition=models.Q(status="open"))]

    def __str__(self):
        return f"double payment #{self.pk}: subscriptions {self.first_id} and {self.second_id}"


class Drift(models.Model):
    """A store read (re-poll, reconciliation, verification, staff re-sync) found the store's state of a
    subscription different from ours in a way no delivered event told us: a missed or late webhook.
    Recorded by the write path before it applies the store's state (billing/drift.py)."""

    class FoundBy(models.TextChoices):
        REPOLL = "repoll", "re-poll"
        RECONCILIATION = "reconciliation", "reconciliation"
        VERIFICATION = "verification", "purchase verification"
        STAFF_RESYNC = "staff_resync", "staff re-sync"

    # The fields compared, in the order shown.
    FIELDS = ("status", "expires_at", "grace_until", "product", "auto_renew", "price")
    FIELD_CHOICES = [("status", "status"), ("expires_at", "access end (expiry)"), ("grace_until", "grace end"),
                     ("product", "product"), ("auto_renew", "auto-renew"), ("price", "price")]

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="drifts")
    provider = models.CharField(max_length=16, choices=Provider.CHOICES)
    found_by = models.CharField(max_length=16, choices=FoundBy.choices)
    found_at = models.DateTimeField(default=timezone.now)
    observed_at = models.DateTimeField(help_text="Store time of the state read")
    # {field: {"ours": value, "store": value}}, values as text (times in ISO 8601, prices as "9.99 EUR").
    differences = models.JSONField(default=dict)
    applied = models.BooleanField(default=True, help_text="False: found by a dry run, the store's state not applied")
    dismissed_at = models.DateTimeField(null=True, blank=True)
    dismissed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    dismiss_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-found_at", "-id"]
        indexes = [models.Index(fields=["-found_at"], name="drift_by_time"),
                   models.Index(fields=["provider", "-found_at"], name="drift_by_store_time"),
                   models.Index(fields=["found_at"], name="drift_open_by_time",
                                condition=models.Q(dismissed_at__isnull=True))]

    def __str__(self):
        return f"{self.provider} drift of subscription {self.subscription_id}: {', '.join(self.differences)}"
