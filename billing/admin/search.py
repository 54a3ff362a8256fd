"""Finding a customer by any id a store gave them or us (the Subscribers' and Subscriptions' search
boxes, and the autocomplete pickers that use them).

First the ids, matched exactly (ids are case-sensitive at the stores) on indexed columns: the app's user
id and each store identity on the subscriber; a store subscription id; a ledger row's store transaction
id or order id (an Apple transaction id, a Google order id, a Stripe invoice); an Apple appAccountToken.
Each step is one query PostgreSQL answers from its indexes (a BitmapOr of unique indexes), and the ids
found are passed on as a list, so no step becomes a scan. Only when no id matches, the e-mail: any part,
any case (`ILIKE`: a scan of the subscribers, the one search that cannot use an index).

Django's own search (`search_fields = ("=external_id", …)`) compares `UPPER(column) = UPPER(term)`, which
no index answers: measured at 100,000 subscribers and 500,000 ledger rows, it read every subscriber
(~80 ms per search, growing with the table). Declared `search_fields` remain for the search box and the
autocomplete pickers; the matching is here."""

import uuid

from django.db.models import Q, QuerySet

from accounts.models import Subscriber
from billing.models import Subscription, Transaction


def apple_token(term: str) -> uuid.UUID | None:
    """An Apple appAccountToken typed in the search box (a UUID)."""
    try:
        return uuid.UUID(term.strip())
    except (ValueError, AttributeError):
        return None


def _subscribers_by_identity(term: str) -> list[int]:
    match = Q(external_id=term) | Q(stripe_customer_id=term) | Q(google_obfuscated_account_id=term) | Q(
        xsolla_user_id=term)
    token = apple_token(term)
    if token is not None:
        match |= Q(apple_app_account_token=token)
    return list(Subscriber.objects.filter(match).values_list("pk", flat=True))


def _subscriptions_by_store_id(term: str) -> list[tuple[int, int | None]]:
    """(subscription id, subscriber id) of the subscriptions with this store id, or whose ledger has it."""
    paid = list(Transaction.objects.filter(Q(provider_transaction_id=term) | Q(order_id=term))
                .values_list("subscription_id", flat=True))
    return list(Subscription.objects.filter(Q(provider_subscription_id=term) | Q(pk__in=paid))
                .values_list("pk", "subscriber_id"))


def subscribers(queryset: QuerySet, term: str) -> QuerySet:
    """The Subscribers search: by any id (theirs or their purchases'), else by e-mail."""
    term = (term or "").strip()
    if not term:
        return queryset
    found = set(_subscribers_by_identity(term))
    found |= {owner for _sub, owner in _subscriptions_by_store_id(term) if owner is not None}
    if found:
        return queryset.filter(pk__in=sorted(found))
    return queryset.filter(email__icontains=term)


def subscriptions(queryset: QuerySet, term: str) -> QuerySet:
    """The Subscriptions search: by a store id of the subscription or of its ledger, or every subscription
    of the subscriber an id names; else by the subscriber's e-mail."""
    term = (term or "").strip()
    if not term:
        return queryset
    owners = _subscribers_by_identity(term)
    found = {sub for sub, _owner in _subscriptions_by_store_id(term)}
    if owners:
        found |= set(Subscription.objects.filter(subscriber_id__in=owners).values_list("pk", flat=True))
    if found:
        return queryset.filter(pk__in=sorted(found))
    return queryset.filter(subscriber__email__icontains=term)
