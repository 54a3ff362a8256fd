"""`manage.py seed_demo`: the demo data `make run` serves, idempotent, with a local admin login."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Subscriber, User
from billing.models import Outbox, Product, StatusChange, Subscription, Transaction
from billing.providers.stripe.selectors import price_is_offered
from billing.statuses import Status

pytestmark = pytest.mark.django_db


def seed(tmp_path):
    out = StringIO()
    call_command("seed_demo", "--admin-password-file", str(tmp_path / "pw.txt"), stdout=out)
    return out.getvalue()


def test_seed_demo_is_idempotent_and_covers_the_stores(tmp_path, settings):
    settings.DEBUG = True
    first = seed(tmp_path)
    # Status history only: a second run moves the demo's dates (relative to now), which the history
    # records as `state` rows, as it would any store's new expiry.
    status_changes = StatusChange.objects.filter(kind="status")
    counts = (Subscription.objects.count(), status_changes.count(), Transaction.objects.count(),
              Outbox.objects.count(), Subscriber.objects.count())
    second = seed(tmp_path)
    assert (Subscription.objects.count(), status_changes.count(), Transaction.objects.count(),
            Outbox.objects.count(), Subscriber.objects.count()) == counts

    by_user = {s.subscriber.external_id if s.subscriber else None: (s.provider, s.status)
               for s in Subscription.objects.select_related("subscriber")}
    assert by_user["1001"] == ("stripe", Status.ACTIVE)
    assert by_user["1002"] == ("apple", Status.TRIAL)
    assert by_user["1003"] == ("google", Status.ON_GRACE)
    assert by_user["1004"] == ("xsolla", Status.CANCELED)
    assert by_user["1005"][1] == Status.EXPIRED and by_user["1006"][1] == Status.REVOKED
    assert by_user[None] == ("google", Status.ACTIVE)  # the orphan
    now = timezone.now()
    entitled = {s.subscriber.external_id for s in Subscription.objects.exclude(subscriber=None) if s.is_entitled(now)}
    assert entitled == {"1001", "1002", "1003", "1004", "1007"}
    assert all(s.product.entitlements.filter(name="premium").exists() for s in Subscription.objects.all())

    password = (tmp_path / "pw.txt").read_text().strip()
    assert User.objects.get(username="admin").check_password(password)
    assert f"password '{password}'" in first and f"password '{password}'" in second
    assert "curl http://127.0.0.1:8088/api/subscriptions/check/1001" in first


def test_no_admin_login_without_debug(tmp_path, settings):
    settings.DEBUG = False
    out = seed(tmp_path)
    assert not User.objects.exists() and "createsuperuser" in out and not (tmp_path / "pw.txt").exists()


def test_the_demo_stripe_price_is_on_sale_and_the_others_are_not_marked(tmp_path, settings):
    settings.STRIPE_OFFERED_PRICES = []
    seed(tmp_path)
    seed(tmp_path)  # idempotent: still on sale, nothing doubled
    assert price_is_offered("price_demo_premium_monthly")
    assert set(Product.objects.filter(offered=True).values_list("provider", flat=True)) == {"stripe"}
