"""Every subscription as it stood at a past moment, rebuilt from its history rows (StatusChange), so that
the answer for a past moment does not change when asked again later (docs/finance.md "Subscriptions as
of a moment").

A row counts "as of" a moment when it was both true at the store (`occurred_at`) and known to us
(`recorded_at`) by then: a late event, recorded after the moment, does not rewrite that moment; it shows
from when it was recorded. Of the rows that count, a subscription's state is its newest applied one (by
id: the order the write path applied them in, one subscription at a time under its row lock); rows
ignored as stale changed nothing and are skipped."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import F, Lookup, OuterRef, Q, QuerySet, Subquery

from .models import Product, StatusChange
from .statuses import Status, access_ends_at, is_entitled


@dataclass(frozen=True)
class SubscriptionState:
    """One subscription as it stood: its identity (which never changes) and the state in force."""

    subscription_id: int
    provider: str
    provider_subscription_id: str
    status: str
    state_known: bool  # False: a row older than the history's state columns; only the status is known
    user_id: str | None  # the app's user id (Subscriber.external_id); None: an orphan then
    product_id: int | None
    store_product_id: str
    product_label: str
    environment: str
    amount_minor: int | None
    currency: str
    period_unit: str
    period_value: int | None
    auto_renew: bool | None
    expires_at: datetime | None
    grace_until: datetime | None
    since: datetime  # the store time of the row that set this state
    history_id: int | None  # that row (None: read from the subscription itself, e.g. the admin's export)

    @property
    def access_ends_at(self) -> datetime | None:
        return access_ends_at(self.status, self.expires_at, self.grace_until) if self.is_entitled_status else None

    @property
    def is_entitled_status(self) -> bool:
        return self.status in (Status.TRIAL, Status.ACTIVE, Status.CANCELED, Status.ON_GRACE)

    def is_entitled(self, moment: datetime) -> bool:
        return is_entitled(self.status, self.expires_at, self.grace_until, moment)


class _AnyOf(Lookup):
    """`field = ANY(%s)`: the ids as one array parameter (used as an expression, not registered)."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", (*lhs_params, self.rhs)


def ids_in(field: str, ids: Iterable[int] | QuerySet) -> Q | Lookup:
    """`field IN ids`; on PostgreSQL a list of ids is one array parameter (`= ANY(%s)`) instead of one
    placeholder per id, which the driver parses one by one (seconds for a day's tens of thousands)."""
    if connection.vendor != "postgresql" or isinstance(ids, QuerySet):
        return Q(**{f"{field}__in": ids})
    return _AnyOf(F(field), sorted(set(ids)))


def history_rows_as_of(moment: datetime) -> QuerySet:
    """The history rows that count as of `moment` (true and known by then; applied ones only)."""
    return StatusChange.objects.filter(recorded_at__lte=moment, occurred_at__lte=moment, ignored=False)


def subscriptions_as_of(moment: datetime, *, provider: str | None = None, environment: str | None = None,
                        subscription_ids: Iterable[int] | QuerySet | None = None,
                        statuses: Iterable[str] | None = None, including: Iterable[int] = (),
                        users: bool = True, chunk_size: int = 2000) -> Iterator[SubscriptionState]:
    """The state of every subscription that had one at `moment`, in subscription id order. Filters:
    `provider`; `environment` (the state's; for rows without a known state, the subscription's); `subscription_ids`
    (ids or a queryset of subscriptions); `statuses` (the state's status: e.g. finance's stocks skip the
    millions ended for years without reading them into Python), and with it `including` (subscription ids
    whose state is wanted whatever its status). `users` False: user_id is None (not read: two joins fewer;
    with `statuses` on PostgreSQL it is read anyway)."""
    rows = history_rows_as_of(moment)
    if provider:
        rows = rows.filter(subscription__provider=provider)
    if subscription_ids is not None:
        rows = rows.filter(ids_in("subscription_id", subscription_ids))
    if connection.vendor == "postgresql":
        # One pass over the index (subscription, -id): the newest row of each subscription.
        newest = rows.order_by("subscription_id", "-id").distinct("subscription_id")
    else:
        later = rows.filter(subscription_id=OuterRef("subscription_id")).order_by("-id").values("id")[:1]
        newest = rows.filter(id=Subquery(later)).order_by("subscription_id")
    if environment:
        # After choosing the newest row: a subscription that moved environments is judged by its state then.
        same = (Q(state_known=True, environment=environment)
                | Q(state_known=False, subscription__environment=environment))
        newest = StatusChange.objects.filter(same, id__in=newest.values("id")).order_by("subscription_id")
    labels = _product_labels()
    if statuses is not None and connection.vendor == "postgresql" and not environment:
        yield from _newest_of_statuses(newest, sorted(statuses), sorted(set(including)), labels, chunk_size)
        return
    if statuses is not None:
        # After choosing the newest row too: a subscription ended since has an older row of that status.
        kept = Q(new_status__in=sorted(statuses)) | Q(subscription_id__in=sorted(set(including)))
        newest = StatusChange.objects.filter(kept, id__in=newest.values("id")).order_by("subscription_id")
    columns = _COLUMNS if users else _COLUMNS_NO_USER
    for values in newest.values_list(*columns).iterator(chunk_size=chunk_size):
        yield _state_of_values(dict(zip(columns, values, strict=True)), labels)


def states_of_rows(rows: QuerySet, *, users: bool = True, chunk_size: int = 2000) -> Iterator[SubscriptionState]:
    """The state each of these (applied) history rows set, in the rows' order (finance's day: its rows).
    `users` False: user_id is None (not read: two joins fewer)."""
    labels, columns = _product_labels(), _COLUMNS if users else _COLUMNS_NO_USER
    for values in rows.values_list(*columns).iterator(chunk_size=chunk_size):
        yield _state_of_values(dict(zip(columns, values, strict=True)), labels)


def _newest_of_statuses(newest: QuerySet, statuses: list[str], including: list[int], labels: dict[int, str],
                        chunk_size: int) -> Iterator[SubscriptionState]:
    """PostgreSQL: the newest rows (DISTINCT ON, history columns only) filtered by status, then joined to the
    subscription and its user: the joins and the conversion to Python are paid for the states kept only
    (a filter on `id IN (DISTINCT ON …)` instead re-reads each row by its key, in every parallel worker).
    MATERIALIZED: the pass over the history is made once, not once per parallel worker of the joins. The
    ids `including` are matched through a hashed subplan (`= ANY(array)` compares each row with every id)."""
    own = [c for c in _COLUMNS if c != "subscriber__external_id" and not c.startswith("subscription__")]
    try:
        inner, params = newest.values(*own, "subscriber_id").query.sql_with_params()
    except EmptyResultSet:  # e.g. no subscription ids given
        return
    # Built from the ORM's own SQL (its values passed as parameters) and this module's column names only.
    sql = f"""
        WITH h AS MATERIALIZED ({inner})
        SELECT h.{', h.'.join(own)}, owner.external_id, s.provider, s.provider_subscription_id, holder.external_id,
               s.product_id, s.store_product_id, s.environment
        FROM h
        JOIN billing_subscription s ON s.id = h.subscription_id
        LEFT JOIN accounts_subscriber owner ON owner.id = h.subscriber_id
        LEFT JOIN accounts_subscriber holder ON holder.id = s.subscriber_id
        WHERE h.new_status = ANY(%s) OR h.subscription_id IN (SELECT unnest(%s::bigint[]))
        ORDER BY h.subscription_id"""  # noqa: S608
    names = [*own, "subscriber__external_id", "subscription__provider", "subscription__provider_subscription_id",
             "subscription__subscriber__external_id", "subscription__product_id", "subscription__store_product_id",
             "subscription__environment"]
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, (*params, statuses, including))
        while chunk := cursor.fetchmany(chunk_size):
            for values in chunk:
                yield _state_of_values(dict(zip(names, values, strict=True)), labels)


# What a state is built from: plain values, not model instances (a sixth of the time, measured on 100k
# subscriptions: bench/metrics.py), and few timestamps (each one converted on load).
_COLUMNS = ("id", "subscription_id", "new_status", "state_known", "subscriber__external_id", "product_id",
            "store_product_id", "environment", "amount_minor", "currency", "period_unit", "period_value",
            "auto_renew", "expires_at", "grace_until", "occurred_at", "subscription__provider",
            "subscription__provider_subscription_id", "subscription__subscriber__external_id",
            "subscription__product_id", "subscription__store_product_id", "subscription__environment")
_COLUMNS_NO_USER = tuple(c for c in _COLUMNS if not c.endswith("subscriber__external_id"))


def _product_labels() -> dict[int, str]:
    """The catalogue's labels (a few hundred products at most), read once per export."""
    return {product.pk: str(product) for product in Product.objects.all()}


def _state_of_values(row: dict, labels: dict[int, str]) -> SubscriptionState:
    identity = {"subscription_id": row["subscription_id"], "provider": row["subscription__provider"],
                "provider_subscription_id": row["subscription__provider_subscription_id"],
                "status": row["new_status"], "since": row["occurred_at"], "history_id": row["id"]}
    if not row["state_known"]:
        # A row from before the history carried states: its status, and who and what the subscription
        # is now (product, environment, user: they rarely change); no price, no dates.
        product_id = row["subscription__product_id"]
        return SubscriptionState(
            **identity, state_known=False, user_id=row.get("subscription__subscriber__external_id"),
            product_id=product_id, store_product_id=row["subscription__store_product_id"],
            product_label=labels.get(product_id, ""), environment=row["subscription__environment"],
            amount_minor=None, currency="", period_unit="", period_value=None, auto_renew=None, expires_at=None,
            grace_until=None)
    return SubscriptionState(
        **identity, state_known=True, user_id=row.get("subscriber__external_id"), product_id=row["product_id"],
        store_product_id=row["store_product_id"], product_label=labels.get(row["product_id"], ""),
        environment=row["environment"], amount_minor=row["amount_minor"], currency=row["currency"],
        period_unit=row["period_unit"], period_value=row["period_value"], auto_renew=row["auto_renew"],
        expires_at=row["expires_at"], grace_until=row["grace_until"])


def state_of_subscription(sub) -> SubscriptionState:
    """The subscription's current state, in the same shape (for exports of what the admin lists now)."""
    return SubscriptionState(
        subscription_id=sub.pk, provider=sub.provider, provider_subscription_id=sub.provider_subscription_id,
        status=sub.status, state_known=True,
        user_id=sub.subscriber.external_id if sub.subscriber_id is not None else None,
        product_id=sub.product_id, store_product_id=sub.store_product_id,
        product_label=str(sub.product) if sub.product_id is not None else "",
        environment=sub.environment, amount_minor=sub.amount_minor, currency=sub.currency,
        period_unit=sub.period_unit, period_value=sub.period_value, auto_renew=sub.auto_renew,
        expires_at=sub.expires_at, grace_until=sub.grace_until, since=sub.last_event_at or sub.created_at,
        history_id=None)


def rows_entering(start: datetime, end: datetime) -> QuerySet:
    """The applied history rows that start to count during (start, end]: true and known at end but not
    both at start (finance's daily flows)."""
    known_at_end = Q(recorded_at__lte=end, occurred_at__lte=end)
    known_at_start = Q(recorded_at__lte=start, occurred_at__lte=start)
    return StatusChange.objects.filter(known_at_end, ignored=False).exclude(known_at_start)
