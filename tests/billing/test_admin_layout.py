"""The admin as people use it (docs/support.md "The admin's layout"): our sections first, the Stripe
mirror for superusers only, statuses as labels, a customer found by any store id, the "Needs attention"
box's links landing on exactly the rows they count, and the Transactions list's date range and totals."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from accounts.models import Subscriber
from billing.apply import apply_snapshot
from billing.models import Product, Subscription, Transaction
from billing.snapshots import Cause, CauseKind, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status
from tests.factories import ProductFactory, SubscriberFactory, UserFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

T0 = timezone.now() - timedelta(days=2)
APPLE_TRANSACTION = "2000000812345678"
GOOGLE_ORDER = "GPA.3391-4107-0077-12345"


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def console_customers() -> dict:
    """Three customers, one per store, with their ledgers; an orphan Google purchase of a product nobody
    mapped, awaiting acknowledgement within the day; a dead webhook event."""
    ProductFactory(provider="apple", store_product_id="com.app.premium.monthly", label="Premium (iOS)")
    ProductFactory(provider="google", store_product_id="premium_monthly", label="Premium (Android)")
    ProductFactory(provider="stripe", store_product_id="price_premium", label="Premium (web)")
    SubscriberFactory(external_id="1001", email="ann@example.com")
    SubscriberFactory(external_id="1002", email="bob@example.com")
    SubscriberFactory(external_id="1003", email="cyd@example.com", stripe_customer_id="cus_cyd")

    def apply(**fields):
        transactions = fields.pop("transactions", ())
        result = apply_snapshot(Snapshot(observed_at=T0, expires_at=T0 + timedelta(days=30), transactions=transactions,
                                         **fields), Cause(CauseKind.WEBHOOK, ref="evt"))
        return Subscription.objects.get(pk=result.subscription_id)

    apple = apply(provider="apple", provider_subscription_id="2000000800000001", status=Status.ON_HOLD,
                  store_product_id="com.app.premium.monthly", user_id="1001", transactions=(
                      TransactionRecord(APPLE_TRANSACTION, TransactionKind.RENEWAL, T0, 499, "USD",
                                        order_id=APPLE_TRANSACTION),))
    google = apply(provider="google", provider_subscription_id="google-token-bob", status=Status.ACTIVE,
                   store_product_id="premium_monthly", user_id="1002", transactions=(
                       TransactionRecord(GOOGLE_ORDER, TransactionKind.PURCHASE, T0, 450, "EUR",
                                         order_id=GOOGLE_ORDER),))
    stripe = apply(provider="stripe", provider_subscription_id="sub_cyd", status=Status.ACTIVE,
                   store_product_id="price_premium", user_id="1003", transactions=(
                       TransactionRecord("in_cyd_1", TransactionKind.PURCHASE, T0, 999, "USD", order_id="in_cyd_1"),))
    orphan = apply(provider="google", provider_subscription_id="google-token-orphan", status=Status.ACTIVE,
                   store_product_id="gp_unmapped")
    Subscription.objects.filter(pk=orphan.pk).update(acknowledgement_due_at=timezone.now() + timedelta(hours=5))
    dead = WebhookEvent.objects.create(provider="apple", dedupe_key="dead-1", body=b"{}", status="dead")
    return {"apple": apple, "google": google, "stripe": stripe, "orphan": orphan, "dead": dead,
            "unmapped": Product.objects.get(store_product_id="gp_unmapped")}


@pytest.fixture
def customers():
    return console_customers()


# --- layout --------------------------------------------------------------------------------------

def test_our_sections_come_first_and_the_stripe_mirror_last_for_superusers(client):
    client.force_login(UserFactory(username="root", is_superuser=True))
    sections = [app["name"] for app in client.get("/admin/").context["app_list"]]
    assert sections[:3] == ["Billing", "Accounts", "Webhooks"]
    assert sections[-1] == "Stripe mirror"
    assert "Djstripe" not in sections
    billing = client.get("/admin/").context["app_list"][0]
    assert [m["object_name"] for m in billing["models"]][:3] == ["Subscription", "StatusChange", "Transaction"]
    assert client.get("/admin/djstripe/customer/").status_code == 200


def test_the_stripe_mirror_is_hidden_from_staff_even_with_its_permissions(client):
    agent = UserFactory(username="agent", is_superuser=False)
    agent.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["djstripe", "billing"]))
    client.force_login(agent)
    page = client.get("/admin/")
    sections = [app["name"] for app in page.context["app_list"]]
    assert sections[0] == "Billing" and "Stripe mirror" not in sections and "Djstripe" not in sections
    assert "djstripe" not in page.content.decode()
    assert client.get("/admin/djstripe/customer/").status_code == 403
    assert client.get("/admin/djstripe/").status_code == 404


def test_lists_show_status_labels_not_codes(admin_client, customers):
    page = admin_client.get(changelist(Subscription)).content.decode()
    assert "On hold" in page
    assert not re.search(r"<td[^>]*>ON_HOLD</td>", page)
    history = admin_client.get(changelist(Subscription._meta.get_field("status_changes").related_model))
    assert "On hold" in history.content.decode()
    filtered = admin_client.get(changelist(Subscription), {"status__exact": "ON_HOLD"}).context["cl"]
    assert list(filtered.result_list) == [customers["apple"]]


# --- search --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("term", "user"), [(APPLE_TRANSACTION, "1001"), (GOOGLE_ORDER, "1002"), ("in_cyd_1", "1003"),
                                            ("cus_cyd", "1003"), ("sub_cyd", "1003"), ("bob@example.com", "1002"),
                                            ("2000000800000001", "1001")])
def test_an_agent_finds_the_customer_by_any_store_id(admin_client, customers, term, user):
    subscribers = admin_client.get(changelist(Subscriber), {"q": term}).context["cl"].result_list
    assert [s.external_id for s in subscribers] == [user]
    subscriptions = admin_client.get(changelist(Subscription), {"q": term}).context["cl"].result_list
    assert [s.subscriber.external_id for s in subscriptions] == [user]


def test_an_id_is_matched_exactly_before_any_email(admin_client, customers):
    SubscriberFactory(external_id="5000", email="fan-of-1001@example.com")
    by_id = admin_client.get(changelist(Subscriber), {"q": "1001"}).context["cl"].result_list
    assert [s.external_id for s in by_id] == ["1001"]  # not the e-mail that contains 1001
    by_email = admin_client.get(changelist(Subscriber), {"q": "FAN-of-1001"}).context["cl"].result_list
    assert [s.external_id for s in by_email] == ["5000"]  # no id matches: part of an e-mail, any case
    subscriptions = admin_client.get(changelist(Subscription), {"q": "Bob@Example.com"}).context["cl"].result_list
    assert [s.provider_subscription_id for s in subscriptions] == ["google-token-bob"]


def test_a_search_stays_within_the_lists_filters(admin_client, customers):
    found = admin_client.get(changelist(Subscription), {"q": GOOGLE_ORDER, "provider__exact": "apple"})
    assert list(found.context["cl"].result_list) == []


# --- needs attention -----------------------------------------------------------------------------

def _attention_links(admin_client) -> dict[str, tuple[int, str]]:
    page = admin_client.get("/admin/").content.decode()
    box = page[page.index('id="needs-attention"'):]
    box = box[:box.index("</div>")]
    rows = re.findall(r'<th scope="row"><a href="([^"]+)">([^<]+)</a>.*?<strong>(\d+)</strong>', box, re.S)
    return {label: (int(count), url.replace("&amp;", "&")) for url, label, count in rows}


def test_needs_attention_counts_link_to_exactly_those_rows(admin_client, customers):
    links = _attention_links(admin_client)
    expected = {
        "Dead webhook events": [customers["dead"]],
        "Google acknowledgements due within a day": [customers["orphan"]],
        "Subscriptions without a user (orphans)": [customers["orphan"]],
        "Products that grant nothing (unmapped)": [customers["unmapped"]],
    }
    for label, rows in expected.items():
        count, url = links[label]
        listed = admin_client.get(url).context["cl"]
        assert count == len(rows) == listed.result_count, label
        assert list(listed.result_list) == rows, label


def test_needs_attention_counts_follow_the_data(admin_client, customers):
    Subscription.objects.filter(pk=customers["orphan"].pk).update(
        acknowledgement_due_at=timezone.now() + timedelta(days=2))
    customers["unmapped"].entitlements.add(*Product.objects.get(store_product_id="price_premium").entitlements.all())
    links = _attention_links(admin_client)
    assert "Google acknowledgements due within a day" not in links
    assert "Products that grant nothing (unmapped)" not in links
    assert links["Subscriptions without a user (orphans)"][0] == 1


# --- transactions: date range and totals ---------------------------------------------------------

def _ledger():
    SubscriberFactory(external_id="2001")
    days = [datetime(2026, 11, d, 12, tzinfo=UTC) for d in (1, 15, 30)]
    records = (
        TransactionRecord("p1", TransactionKind.PURCHASE, days[0], 1000, "USD"),
        TransactionRecord("p2", TransactionKind.RENEWAL, days[1], 1000, "USD"),
        TransactionRecord("r1", TransactionKind.REFUND, days[1], 400, "USD"),
        TransactionRecord("p3", TransactionKind.RENEWAL, days[1], 900, "EUR"),
        TransactionRecord("c1", TransactionKind.CHARGEBACK, days[2], 900, "EUR"),
        TransactionRecord("p4", TransactionKind.RENEWAL, days[2] + timedelta(days=1), 1000, "USD"),
    )
    apply_snapshot(Snapshot(provider="stripe", provider_subscription_id="sub_ledger", status=Status.ACTIVE,
                            observed_at=days[2], user_id="2001", transactions=records), Cause(CauseKind.WEBHOOK))


def test_transactions_date_range_includes_both_days(admin_client):
    _ledger()
    cl = admin_client.get(changelist(Transaction), {"occurred_at__from": "2026-11-15",
                                                    "occurred_at__to": "2026-11-30"}).context["cl"]
    assert {t.provider_transaction_id for t in cl.result_list} == {"p2", "r1", "p3", "c1"}
    page = admin_client.get(changelist(Transaction), {"occurred_at__from": "2026-11-15"}).content.decode()
    assert 'value="2026-11-15"' in page  # the filter shows what it applies


def test_transactions_totals_per_currency_for_the_filtered_rows(admin_client):
    _ledger()
    response = admin_client.get(changelist(Transaction), {"occurred_at__from": "2026-11-01",
                                                          "occurred_at__to": "2026-11-30"})
    totals = {t.currency: t for t in response.context["ledger_totals"]}
    assert set(totals) == {"EUR", "USD"}
    usd, eur = totals["USD"], totals["EUR"]
    assert (usd.payments, usd.payments_minor, usd.refunds, usd.refunds_minor, usd.net_minor) == (2, 2000, 1, 400, 1600)
    assert (eur.payments, eur.payments_minor, eur.refunds, eur.refunds_minor, eur.net_minor) == (1, 900, 1, 900, 0)
    page = response.content.decode()
    assert "16.00 USD" in page and "0.00 EUR" in page and 'id="ledger-totals"' in page

    only_refunds = admin_client.get(changelist(Transaction), {"kind__exact": "refund"}).context["ledger_totals"]
    assert [(t.currency, t.payments, t.refunds_minor) for t in only_refunds] == [("USD", 0, 400)]


def test_a_bad_date_is_refused_not_a_500(admin_client):
    response = admin_client.get(changelist(Transaction), {"occurred_at__from": "30/11/2026"})
    assert response.status_code == 302 and "e=1" in response["Location"]


def test_the_pickers_find_a_subscription_and_a_user_by_any_id(admin_client, customers):
    def picked(model_name, field, term):
        answer = admin_client.get("/admin/autocomplete/", {"app_label": "billing", "model_name": model_name,
                                                           "field_name": field, "term": term})
        return [row["text"] for row in answer.json()["results"]]

    assert picked("statuschange", "subscription", GOOGLE_ORDER) == ["google:google-token-bob"]
    assert picked("subscription", "subscriber", APPLE_TRANSACTION) == ["1001"]
