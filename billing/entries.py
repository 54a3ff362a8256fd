"""What the check answer is computed from, per subscription, read from the database: the
"entries" that billing/entitlement_cache.py keeps per user in Redis and billing/selectors.py turns
into the answer. Dates, not verdicts: the answer is computed at read time, so an expiry passing
needs no write."""

from .models import Subscription
from .times import isoformat_z

# What the check answer is computed from, per subscription: dates, not verdicts (the answer is computed
# at read time, so an expiry passing needs no write). Left-joined to the product's entitlements.
_ENTRY_COLUMNS = ("pk", "provider", "store_product_id", "status", "expires_at", "grace_until", "environment",
                  "last_verified_at", "product__entitlements__name")


def _current(subscriptions):
    """Newest first, superseded ones left out."""
    return subscriptions.filter(replaced_by__isnull=True).order_by("-created_at", "-id")


def entries_query(subscriptions):
    """The one query entries_of() runs (the check API's fast path runs it compiled, billing/api/check_wsgi.py)."""
    return _current(subscriptions).values_list(*_ENTRY_COLUMNS)


def entries_from_rows(rows) -> list[dict]:
    entries: dict[int, dict] = {}
    for row in rows:
        _add_row(entries, row)
    return _sorted(entries)


def entries_of(subscriptions) -> list[dict]:
    """One query, grouped here."""
    return entries_from_rows(entries_query(subscriptions))


def entries_by_subscriber(subscriber_ids: list[int]) -> dict[int, list[dict]]:
    """The entries of several subscribers in one query (one without subscriptions is absent)."""
    by_subscriber: dict[int, dict[int, dict]] = {}
    rows = _current(Subscription.objects.filter(subscriber_id__in=subscriber_ids)).values_list(
        "subscriber_id", *_ENTRY_COLUMNS)
    for subscriber_id, *row in rows:
        _add_row(by_subscriber.setdefault(subscriber_id, {}), row)
    return {subscriber_id: _sorted(entries) for subscriber_id, entries in by_subscriber.items()}


def _add_row(entries: dict[int, dict], row) -> None:
    pk, provider, product_id, status, expires_at, grace_until, environment, verified_at, name = row
    entry = entries.get(pk)
    if entry is None:
        entry = entries[pk] = {
            "id": pk, "provider": provider, "product_id": product_id, "status": status,
            "expires_at": isoformat_z(expires_at), "grace_until": isoformat_z(grace_until), "entitlements": [],
            "environment": environment, "last_verified_at": isoformat_z(verified_at)}
    if name is not None:
        entry["entitlements"].append(name)


def _sorted(entries: dict[int, dict]) -> list[dict]:
    for entry in entries.values():
        entry["entitlements"].sort()
    return list(entries.values())  # dicts keep insertion order: newest first
