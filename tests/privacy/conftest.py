"""A customer known everywhere the service keeps anything: subscriptions at two stores (through the write
path: history, ledger, stream events), raw webhook bodies and headers naming them (stored by the real
ingest), a staff note, audit entries, the admin's log, an outgoing-webhook copy of their events, the
check API's cache. Every identifier is distinctive, so a search of the whole database finds only them."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone

from accounts.models import Subscriber
from audit.models import Note
from audit.records import record
from billing.apply import apply_snapshot
from billing.models import Outbox, Subscription
from billing.providers.base import VerifiedEvent
from billing.snapshots import Cause, CauseKind, TransactionKind, TransactionRecord
from billing.statuses import Status
from outgoing.models import Event as OutgoingEvent
from tests.factories import ProductFactory, UserFactory, snapshot
from webhooks.ingest import event_store
from webhooks.models import WebhookEvent


@dataclass
class Customer:
    subscriber: Subscriber
    user_id: str
    email: str
    stripe_customer: str
    apple_token: str
    google_account: str
    xsolla_user: str
    purchase_token: str
    stripe_sub: Subscription
    google_sub: Subscription
    staff: object

    @property
    def secrets(self) -> list[str]:
        return [self.user_id, self.email, self.stripe_customer, self.apple_token, self.google_account,
                self.xsolla_user, self.purchase_token]


def _deliver_raw(provider: str, key: str, body: dict, headers: dict, store_ids: tuple, subscription=None,
                 status=WebhookEvent.Status.PROCESSED) -> WebhookEvent:
    import json

    raw = json.dumps(body).encode()
    pk = event_store(provider=provider, verified=VerifiedEvent(dedupe_key=key, event_type=body.get("type", ""),
                                                               payload=body, store_ids=store_ids),
                     body=raw, headers=headers)
    event = WebhookEvent.objects.get(pk=pk)
    WebhookEvent.objects.filter(pk=pk).update(status=status, processed_at=timezone.now(),
                                              outcome="applied to the subscription")
    if subscription is not None:
        event.subscriptions.add(subscription)  # as processing links what it applied
    return event


def make_customer(*, suffix: str = "ZQ7391", live: bool = True) -> Customer:
    user_id, email = f"cust-{suffix}", f"erin.{suffix.lower()}@example.org"
    stripe_customer, apple_token = f"cus_{suffix}secret", str(uuid.uuid5(uuid.NAMESPACE_DNS, suffix))
    google_account, xsolla_user, purchase_token = f"obf-{suffix}", f"xs-{suffix}", f"gptok-{suffix}-secret"
    ProductFactory(provider="stripe", store_product_id="price_premium", entitlements=["premium"])
    ProductFactory(provider="google", store_product_id="premium_yearly", entitlements=["premium"])
    now = timezone.now()
    webhook = Cause(CauseKind.WEBHOOK, ref=f"evt_{suffix}_1")
    stripe = apply_snapshot(snapshot(
        Status.ACTIVE if live else Status.EXPIRED, at=now - timedelta(days=3), provider="stripe",
        sub_id=f"sub_{suffix}", store_product_id="price_premium", user_id=user_id, email=email,
        identity_field="stripe_customer_id", identity_value=stripe_customer,
        expires_at=now + timedelta(days=27) if live else now - timedelta(days=1), amount_minor=999, currency="USD",
        raw={"customer": stripe_customer, "customer_email": email, "metadata": {"user_id": user_id}},
        transactions=(TransactionRecord(f"in_{suffix}", TransactionKind.PURCHASE, now - timedelta(days=3), 999, "USD",
                                        raw={"customer_email": email, "customer": stripe_customer}),)), webhook)
    google = apply_snapshot(snapshot(
        Status.EXPIRED, at=now - timedelta(days=40), provider="google", sub_id=purchase_token,
        store_product_id="premium_yearly", user_id=user_id, identity_field="google_obfuscated_account_id",
        identity_value=google_account, expires_at=now - timedelta(days=5), amount_minor=4999, currency="EUR",
        raw={"purchaseToken": purchase_token, "obfuscatedExternalAccountId": google_account},
        transactions=(TransactionRecord("GPA.3301-" + suffix, TransactionKind.PURCHASE, now - timedelta(days=400),
                                        4999, "EUR", raw={"purchaseToken": purchase_token}),
                      TransactionRecord("GPA.3301-" + suffix + "..0", TransactionKind.REFUND, now - timedelta(days=41),
                                        1000, "EUR", raw={"purchaseToken": purchase_token}))),
        Cause(CauseKind.VERIFICATION, ref=f"verify by user {user_id}"))
    subscriber = Subscriber.objects.get(external_id=user_id)
    Subscriber.objects.filter(pk=subscriber.pk).update(apple_app_account_token=apple_token, xsolla_user_id=xsolla_user)
    subscriber.refresh_from_db()
    stripe_sub, google_sub = (Subscription.objects.get(pk=r.subscription_id) for r in (stripe, google))

    # Raw webhook bodies and headers: linked by processing, or named only by their store ids.
    _deliver_raw("stripe", f"evt_{suffix}_1", {"type": "customer.subscription.created", "data": {"object": {
        "id": stripe_sub.provider_subscription_id, "customer": stripe_customer, "metadata": {"user_id": user_id}}}},
        {"Stripe-Signature": "t=1,v1=x", "X-Customer-Email": email}, (f"evt_{suffix}_1", stripe_customer),
        subscription=stripe_sub)
    _deliver_raw("google", f"msg-{suffix}", {"type": "SUBSCRIPTION_EXPIRED", "purchaseToken": purchase_token,
                                             "obfuscatedExternalAccountId": google_account},
                 {"User-Agent": "APIs-Google"}, (purchase_token,), status=WebhookEvent.Status.DEAD)
    _deliver_raw("xsolla", f"user_validation:{suffix}", {"type": "user_validation", "user": {
        "id": xsolla_user, "email": email}}, {"Authorization-Hint": "none"}, (xsolla_user,),
        status=WebhookEvent.Status.IGNORED)

    staff = UserFactory(username=f"support-{suffix.lower()}")
    Note.objects.create(subscriber=subscriber, author=staff, author_label=staff.username,
                        text=f"Called from {email}; asked about {purchase_token}")
    record(actor=staff, action="grant", reason=f"goodwill for {email}", subscriber=subscriber,
           subscription_id=stripe_sub.pk, details={"email": {"before": "", "after": email}})
    LogEntry.objects.create(user=staff, content_type=ContentType.objects.get_for_model(Subscriber),
                            object_id=str(subscriber.pk), object_repr=user_id, action_flag=CHANGE,
                            change_message=f'[{{"changed": {{"fields": ["email"]}}}}] {email}')
    for row in Outbox.objects.filter(subscription__subscriber=subscriber):
        OutgoingEvent.objects.create(outbox_id=row.pk, event_id=row.event_id, payload=row.payload,
                                     outbox_created_at=row.created_at)
    return Customer(subscriber, user_id, email, stripe_customer, apple_token, google_account, xsolla_user,
                    purchase_token, stripe_sub, google_sub, staff)


@pytest.fixture
def customer(django_capture_on_commit_callbacks) -> Customer:
    with django_capture_on_commit_callbacks(execute=True):  # stream events published, cache filled
        return make_customer()


def database_hits(needle: str) -> list[str]:
    """Every table.column of the database (text, JSON, bytes, UUID) holding `needle`, case-insensitive."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = 'public' AND data_type IN "
                       "('text', 'character varying', 'json', 'jsonb', 'bytea', 'uuid', 'character')")
        columns = cursor.fetchall()
        hits = []
        for table, column, data_type in columns:
            if data_type == "bytea":
                condition = f'position(convert_to(%s, \'UTF8\') in "{column}") > 0'
                value = needle
            else:
                condition = f'"{column}"::text ILIKE %s'
                value = f"%{needle}%"
            cursor.execute(f'SELECT count(*) FROM "{table}" WHERE {condition}', [value])
            if cursor.fetchone()[0]:
                hits.append(f"{table}.{column}")
    return hits
