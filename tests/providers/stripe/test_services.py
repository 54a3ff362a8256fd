"""The Stripe package's own writes (services.py): the product catalogue, the dj-stripe mirror, and
manage.py stripe_backfill (every Stripe subscription, all statuses, every page, through the one write
path). The web subscriptions are in test_api.py."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from djstripe.models import Subscription as MirroredSubscription

from billing.models import Product, StatusChange, Subscription
from billing.providers.stripe import mapping, services
from billing.statuses import Status

from .conftest import deliver_events

pytestmark = pytest.mark.django_db


def test_backfill_imports_every_subscription_and_price(fake_stripe):
    monthly = fake_stripe.add_price(fake_stripe.add_product("Premium"), unit_amount=999)
    yen = fake_stripe.add_price(fake_stripe.add_product("Premium JP"), unit_amount=980, currency="jpy")
    subs = []
    for n in range(5):
        cus = fake_stripe.customer_create({"email": f"u{n}@example.com"})
        subs.append(fake_stripe.start_subscription(cus, yen if n == 4 else monthly, payment_method="pm_card_visa",
                                                   metadata={"user_id": str(100 + n)} if n else {}))
    fake_stripe.set_status(subs[1]["id"], "canceled")
    fake_stripe.set_status(subs[2]["id"], "past_due")
    out = StringIO()
    call_command("stripe_backfill", "--page-size", "2", stdout=out, stderr=StringIO())  # 3 pages

    rows = {r.provider_subscription_id: r for r in Subscription.objects.select_related("subscriber")}
    assert set(rows) == {s["id"] for s in subs}  # canceled ones too (status=all)
    assert rows[subs[1]["id"]].status == Status.EXPIRED
    assert rows[subs[2]["id"]].status == Status.ON_GRACE
    assert rows[subs[3]["id"]].status == Status.ACTIVE and rows[subs[3]["id"]].subscriber.external_id == "103"
    assert rows[subs[0]["id"]].subscriber is None  # no user id anywhere: an orphan for support
    assert (rows[subs[4]["id"]].amount_minor, rows[subs[4]["id"]].currency) == (980, "JPY")
    assert set(StatusChange.objects.values_list("cause", flat=True)) == {"backfill"}
    labels = dict(Product.objects.filter(provider="stripe").values_list("store_product_id", "label"))
    assert labels == {monthly["id"]: "Premium / month", yen["id"]: "Premium JP / month"}
    assert "5 created" in out.getvalue()
    listed = [p for m, path, p in fake_stripe.requests if path == "/v1/subscriptions" and m == "GET"]
    assert len(listed) == 3 and all(p["status"] == "all" for p in listed)

    call_command("stripe_backfill", "--no-progress", stdout=(again := StringIO()))
    assert "5 unchanged" in again.getvalue() and Subscription.objects.count() == 5


def test_backfill_without_a_key_says_what_to_set(settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(Exception, match="STRIPE_SECRET_KEY"):
        call_command("stripe_backfill", "--no-progress")


def test_backfill_with_the_mirror_syncs_each_subscription_into_dj_stripe(fake_stripe, monthly):
    subs = [fake_stripe.start_subscription(fake_stripe.customer_create({}), monthly, payment_method="pm_card_visa")
            for _ in range(2)]
    call_command("stripe_backfill", "--mirror", "--no-progress", stdout=StringIO())
    assert set(MirroredSubscription.objects.values_list("id", flat=True)) == {s["id"] for s in subs}
    assert Subscription.objects.count() == 2


def test_product_events_relabel_every_price_of_the_product(fake_stripe):
    product = fake_stripe.add_product("Premium")
    prices = [fake_stripe.add_price(product, unit_amount=999), fake_stripe.add_price(product, unit_amount=9900,
                                                                                     interval="year")]
    product["name"] = "Premium Plus"
    fake_stripe.emit("product.updated", product, previous={"name": "Premium"})
    deliver_events(fake_stripe.take_events())
    labels = dict(Product.objects.filter(provider="stripe").values_list("store_product_id", "label"))
    assert labels == {prices[0]["id"]: "Premium Plus / month", prices[1]["id"]: "Premium Plus / year"}


def test_without_the_api_key_a_price_event_updates_the_catalogue_from_its_own_copy(fake_stripe, settings):
    price = fake_stripe.add_price(fake_stripe.add_product("Gold"), unit_amount=4900, interval="year")
    fake_stripe.emit("price.created", {**price, "product": fake_stripe.objects[price["product"]]})
    settings.STRIPE_SECRET_KEY = ""
    requests_before = len(fake_stripe.requests)
    deliver_events(fake_stripe.take_events())
    product = Product.objects.get(provider="stripe", store_product_id=price["id"])
    assert (product.label, product.price_minor, product.period_unit) == ("Gold / year", 4900, "year")
    assert len(fake_stripe.requests) == requests_before  # nothing was asked of Stripe


def test_a_price_without_its_product_keeps_the_better_label(fake_stripe, monthly):
    expanded = {**monthly, "product": fake_stripe.objects[monthly["product"]]}
    services.product_upsert_from_price(price=mapping.parse_price(expanded))
    product = services.product_upsert_from_price(price=mapping.parse_price({**monthly, "unit_amount": 1099}))
    assert (product.label, product.price_minor) == ("Premium / month", 1099)


def catalogue_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if '"billing_product"' in q["sql"] and q["sql"].startswith(("INSERT", "UPDATE"))]


def test_subscription_events_write_the_catalogue_only_for_a_price_new_or_changed(fake_stripe, monthly):
    product = fake_stripe.objects[monthly["product"]]
    cus = fake_stripe.customer_create({"email": "a@example.com"})
    sub = fake_stripe.start_subscription(cus, monthly, payment_method="pm_card_visa", metadata={"user_id": "42"})
    deliver_events(fake_stripe.take_events())  # a price new to us: in the catalogue
    assert Product.objects.get(store_product_id=monthly["id"]).label == "Premium / month"

    fake_stripe.renew(sub["id"])
    with CaptureQueriesContext(connection) as queries:
        delivered = deliver_events(fake_stripe.take_events())
    assert all(d.event.status == "processed" for d in delivered)
    assert catalogue_writes(queries.captured_queries) == []  # the price as we hold it: nothing written

    product["name"] = "Premium Plus"  # renamed at Stripe: the next event's price differs from ours
    fake_stripe.renew(sub["id"])
    deliver_events(fake_stripe.take_events())
    assert Product.objects.get(store_product_id=monthly["id"]).label == "Premium Plus / month"

