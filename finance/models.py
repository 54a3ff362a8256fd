"""Daily metrics and the exchange rates staff enter. The ledger itself is billing.Transaction."""

from django.db import models

from billing.models import Product
from billing.snapshots import Environment, Provider


class MetricDay(models.Model):
    """One day's figures for one (provider, product, environment, currency), computed from the status
    history and the ledger (finance/metrics.py); rebuilding a past day gives the same row."""

    day = models.DateField()
    provider = models.CharField(max_length=16, choices=Provider.CHOICES)
    store_product_id = models.CharField(max_length=255, blank=True)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    environment = models.CharField(max_length=16, choices=Environment.CHOICES, default=Environment.PRODUCTION)
    currency = models.CharField(max_length=3, blank=True)
    # At the end of the day (23:59:59.999999 UTC).
    entitled = models.PositiveIntegerField(default=0)
    in_trial = models.PositiveIntegerField(default=0)
    in_grace = models.PositiveIntegerField(default=0, help_text="Entitled in a grace period (payment being retried)")
    on_hold = models.PositiveIntegerField(default=0, help_text="Billing retry without access (ON_HOLD): not entitled")
    # During the day.
    new = models.PositiveIntegerField(default=0)
    reactivated = models.PositiveIntegerField(default=0)
    churned = models.PositiveIntegerField(default=0, help_text="Lost entitlement")
    trial_starts = models.PositiveIntegerField(default=0)
    trial_conversions = models.PositiveIntegerField(default=0)
    payments = models.PositiveIntegerField(default=0)
    gross_revenue_minor = models.BigIntegerField(default=0)
    refunds = models.PositiveIntegerField(default=0)
    refunds_minor = models.BigIntegerField(default=0)
    mrr_minor = models.BigIntegerField(default=0, help_text="Entitled paying subscriptions' price per month")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "provider", "store_product_id"]
        constraints = [models.UniqueConstraint(fields=["day", "provider", "store_product_id", "environment",
                                                       "currency"], name="metricday_unique")]

    def __str__(self):
        return f"{self.day} {self.provider}:{self.store_product_id} {self.currency}"


class MetricCarry(models.Model):
    """A computed day's stocks per (provider, product, environment, currency), exact (MRR as a fraction:
    MetricDay's is rounded): the next day's stocks are these plus the day's changes (finance/metrics.py).
    Its presence says the day was computed; `history_max_id` tells whether history written since changes it."""

    day = models.DateField(unique=True)
    # [[provider, store_product_id, environment, currency, entitled, in_trial, in_grace, on_hold, "mrr n/d"]]
    stocks = models.JSONField(default=list)
    history_max_id = models.BigIntegerField(help_text="The newest history row (StatusChange) when computed")
    version = models.PositiveSmallIntegerField(help_text="finance.metrics.CARRY_VERSION when computed")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self):
        return f"stocks of {self.day}"


class ExchangeRate(models.Model):
    """Units of FINANCE_REPORTING_CURRENCY for one unit of `currency`, for the month starting `month`."""

    currency = models.CharField(max_length=3)
    month = models.DateField(help_text="The first day of the month")
    rate = models.DecimalField(max_digits=20, decimal_places=10)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-month", "currency"]
        constraints = [models.UniqueConstraint(fields=["currency", "month"], name="exchangerate_unique")]

    def __str__(self):
        return f"{self.currency} {self.month:%Y-%m}: {self.rate}"
