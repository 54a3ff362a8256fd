"""Every subscription as it stood at a moment, as export rows (manage.py export_subscriptions, the
Subscriptions admin's "Export CSV"); the columns are described in docs/finance.md "Subscriptions as of a
moment"."""

from collections.abc import Iterable, Iterator
from datetime import datetime

from billing.history import SubscriptionState

from .values import boolean, decimal_amount, utc_iso

HEADER = ("as_of", "subscription_id", "provider", "store_subscription_id", "user_id", "status", "entitled",
          "access_ends_at", "expires_at", "grace_until", "auto_renew", "product", "store_product_id", "price",
          "price_minor", "currency", "period_unit", "period_value", "environment", "state_since", "state_known")


def subscription_rows(states: Iterable[SubscriptionState], moment: datetime) -> Iterator[tuple]:
    as_of = utc_iso(moment)
    for s in states:
        entitled = s.is_entitled(moment)
        yield (as_of, s.subscription_id, s.provider, s.provider_subscription_id, s.user_id or "", s.status,
               boolean(entitled), utc_iso(s.access_ends_at) if entitled else "", utc_iso(s.expires_at),
               utc_iso(s.grace_until), boolean(s.auto_renew), s.product_label, s.store_product_id,
               decimal_amount(s.amount_minor, s.currency), "" if s.amount_minor is None else s.amount_minor,
               s.currency, s.period_unit, "" if s.period_value is None else s.period_value, s.environment,
               utc_iso(s.since), boolean(s.state_known))
