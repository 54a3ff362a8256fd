"""manage.py stripe_backfill: every Stripe subscription (all statuses, every page) through the one write path."""

from io import StringIO

import pytest
from django.core.management import call_command

from billing.models import Product, StatusChange, Subscription
from billing.statuses import Status

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
