"""Finding a customer by any id a store gave them or us (the Subscribers' and Subscriptions' search
boxes): a store subscription id, an Apple transaction id, a Google order id, a Stripe invoice, an
Apple appAccountToken. Each is an exact match on an indexed column, looked up in a subquery rather than
joined into the search's OR (a join over the ledger would make PostgreSQL read whole tables and the
admin de-duplicate the rows)."""

import uuid

from django.db.models import Q, QuerySet

from billing.models import Subscription, Transaction


def apple_token(term: str) -> uuid.UUID | None:
    """An Apple appAccountToken typed in the search box (a UUID)."""
    try:
        return uuid.UUID(term.strip())
    except (ValueError, AttributeError):
        return None


def subscriptions_with_store_id(term: str) -> Q:
    """Subscriptions whose store id, or one of whose ledger rows' store or order id, is `term` exactly."""
    paid = Transaction.objects.filter(Q(provider_transaction_id=term) | Q(order_id=term)).values("subscription_id")
    return Q(provider_subscription_id=term) | Q(pk__in=paid)


def subscriptions_matching(term: str) -> Q | None:
    """The extra matches of the Subscriptions search box (beside its search_fields), or None."""
    term = (term or "").strip()
    if not term:
        return None
    extra = subscriptions_with_store_id(term)
    token = apple_token(term)
    if token is not None:
        extra |= Q(subscriber__apple_app_account_token=token)
    return extra


def subscribers_matching(term: str) -> Q | None:
    """The extra matches of the Subscribers search box: the owners of the subscriptions found above,
    and an Apple appAccountToken."""
    term = (term or "").strip()
    if not term:
        return None
    owners = Subscription.objects.filter(subscriptions_with_store_id(term), subscriber__isnull=False)
    extra = Q(pk__in=owners.values("subscriber_id"))
    token = apple_token(term)
    if token is not None:
        extra |= Q(apple_app_account_token=token)
    return extra


def searched(searched_queryset: QuerySet, filtered_queryset: QuerySet, extra: Q | None) -> QuerySet:
    """The search fields' matches or the extra ones, both within the list's filters."""
    return searched_queryset if extra is None else searched_queryset | filtered_queryset.filter(extra)
