"""Everything we hold about one customer, as querysets: what `export_subscriber` writes and what
`erase_subscriber` overwrites. One place, so the two can never disagree about what "everything" is.

Webhook events are found three ways: those processing linked to the customer's subscriptions, and those
whose store ids (`store_ids`: event, subscription, purchase token, customer ids) name one of the
customer's subscriptions or store identities (an event that failed before it was linked)."""

import re
from dataclasses import dataclass

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet

from accounts.models import Subscriber
from audit.models import AuditEntry, Note
from billing.models import DoublePayment, Outbox, StatusChange, Subscription, Transaction
from billing.snapshots import Provider
from outgoing.models import Event as OutgoingEvent
from webhooks.models import WebhookEvent


@dataclass
class Holdings:
    subscriber: Subscriber
    subscriptions: QuerySet
    status_changes: QuerySet
    transactions: QuerySet
    notes: QuerySet
    audit_entries: QuerySet
    outbox: QuerySet
    outgoing_events: QuerySet
    webhook_events: QuerySet
    double_payments: QuerySet
    admin_log: QuerySet

    def identifiers(self) -> list[str]:
        """The strings that name this customer anywhere: the app's user id, the e-mail, each store
        identity, and Google purchase tokens (a secret of the buyer's device, and a store id)."""
        s = self.subscriber
        values = [s.external_id, s.email, s.stripe_customer_id, s.google_obfuscated_account_id, s.xsolla_user_id,
                  str(s.apple_app_account_token) if s.apple_app_account_token else None]
        values += list(self.subscriptions.filter(provider=Provider.GOOGLE)
                       .values_list("provider_subscription_id", flat=True))
        return sorted({v for v in values if v}, key=len, reverse=True)  # the longest first: no partial overlap

    def store_ids(self) -> list[str]:
        """The ids a webhook event's `store_ids` may name the customer by."""
        s = self.subscriber
        values = [s.stripe_customer_id, s.google_obfuscated_account_id, s.xsolla_user_id,
                  str(s.apple_app_account_token) if s.apple_app_account_token else None]
        values += list(self.subscriptions.values_list("provider_subscription_id", flat=True))
        return sorted({v for v in values if v})


def holdings_of(subscriber: Subscriber) -> Holdings:
    subscriptions = Subscription.objects.filter(subscriber=subscriber).order_by("pk")
    sub_ids = list(subscriptions.values_list("pk", flat=True))
    holdings = Holdings(
        subscriber=subscriber,
        subscriptions=subscriptions,
        status_changes=StatusChange.objects.filter(subscription_id__in=sub_ids).order_by("pk"),
        transactions=Transaction.objects.filter(subscription_id__in=sub_ids).order_by("pk"),
        notes=Note.objects.filter(subscriber=subscriber).order_by("pk"),
        audit_entries=AuditEntry.objects.filter(Q(subscriber=subscriber) | Q(subscription_id__in=sub_ids))
        .order_by("pk"),
        outbox=Outbox.objects.filter(Q(subscription_id__in=sub_ids) | Q(payload__userId=subscriber.external_id))
        .order_by("pk"),
        outgoing_events=OutgoingEvent.objects.filter(payload__userId=subscriber.external_id).order_by("pk"),
        webhook_events=WebhookEvent.objects.none(),
        double_payments=DoublePayment.objects.filter(subscriber=subscriber).order_by("pk"),
        admin_log=_admin_log(subscriber, sub_ids),
    )
    named = Q(subscriptions__id__in=sub_ids)
    for store_id in holdings.store_ids():
        named |= Q(store_ids__contains=[store_id])
    holdings.webhook_events = WebhookEvent.objects.filter(
        pk__in=WebhookEvent.objects.filter(named).values("pk")).order_by("pk")
    return holdings


def _admin_log(subscriber: Subscriber, sub_ids: list[int]) -> QuerySet:
    """The admin's own change history of the customer's rows (its object_repr is the user id)."""
    return LogEntry.objects.filter(
        Q(content_type=ContentType.objects.get_for_model(Subscriber), object_id=str(subscriber.pk))
        | Q(content_type=ContentType.objects.get_for_model(Subscription), object_id__in=[str(i) for i in sub_ids])
    ).order_by("pk")


def scrubber(identifiers: list[str], replacement: str):
    """A function replacing each identifier in a text by `replacement`, as a whole token (the user id
    "12" is not replaced inside "2012-…")."""
    if not identifiers:
        return lambda text: text
    pattern = re.compile("|".join(rf"(?<![\w@.-]){re.escape(i)}(?![\w@-])" for i in identifiers), re.IGNORECASE)
    return lambda text: pattern.sub(replacement, text) if text else text
