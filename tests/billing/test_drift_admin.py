"""What staff and operators see of drifts and store budgets: the admin's drift list (filters, dismiss with a
reason, the daily count per store, each store's budget), the Needs attention rows, and /health."""

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from billing import store_budgets
from billing.models import Drift
from billing.providers.base import StoreRateLimited
from billing.providers.xsolla import client as xsolla_client
from tests.factories import SubscriptionFactory, UserFactory
from webhooks.attention import needs_attention

pytestmark = pytest.mark.django_db

LIST = reverse("admin:billing_drift_changelist")


@pytest.fixture
def staff(client):
    user = UserFactory(username="support")
    client.force_login(user)
    return user


def drift(provider="google", *, days_ago: float = 0, found_by="reconciliation", **differences) -> Drift:
    sub = SubscriptionFactory(provider=provider)
    return Drift.objects.create(subscription=sub, provider=provider, found_by=found_by,
                                found_at=timezone.now() - timedelta(days=days_ago), observed_at=timezone.now(),
                                differences=differences or {"status": {"ours": "ACTIVE", "store": "EXPIRED"}})


def listed(client, **query) -> set[int]:
    return {d.pk for d in client.get(LIST, query).context["cl"].result_list}


def test_the_list_filters_by_store_field_found_by_date_and_state(client, staff):
    google = drift("google")
    apple = drift("apple", expires_at={"ours": "2026-01-01T00:00:00+00:00", "store": "2026-02-01T00:00:00+00:00"})
    old = drift("stripe", days_ago=10, found_by="repoll")
    dismissed = drift("xsolla")
    dismissed.dismissed_at = timezone.now()
    dismissed.save()

    assert listed(client) == {google.pk, apple.pk, old.pk, dismissed.pk}
    assert listed(client, provider__exact="apple") == {apple.pk}
    assert listed(client, field="expires_at") == {apple.pk}
    assert listed(client, field="status") == {google.pk, old.pk, dismissed.pk}
    assert listed(client, found_by__exact="repoll") == {old.pk}
    since = (timezone.now() - timedelta(days=2)).isoformat()
    assert listed(client, found_at__gte=since) == {google.pk, apple.pk, dismissed.pk}
    assert listed(client, state="open") == {google.pk, apple.pk, old.pk}

    page = client.get(LIST).content.decode()
    assert "status: ACTIVE → EXPIRED" in page and "expires_at: 2026-01-01 00:00 → 2026-02-01 00:00" in page
    assert client.get(reverse("admin:billing_drift_change", args=[apple.pk])).status_code == 200


def test_dismiss_asks_for_a_reason_and_records_who_and_why(client, staff):
    one, other = drift("google"), drift("apple")
    post = {"action": "dismiss", "_selected_action": [one.pk], "apply": "1"}

    page = client.post(LIST, {**post, "reason": ""})
    assert page.status_code == 200 and "This field is required" in page.content.decode()
    assert Drift.objects.get(pk=one.pk).dismissed_at is None

    client.post(LIST, {**post, "reason": "Google outage of 4 Dec, redelivered"}, follow=True)

    one.refresh_from_db()
    other.refresh_from_db()
    assert one.dismissed_at is not None and one.dismissed_by == staff
    assert one.dismiss_reason == "Google outage of 4 Dec, redelivered"
    assert other.dismissed_at is None
    entry = AuditEntry.objects.get(action="drift_dismiss")
    assert (entry.actor_user, entry.reason, entry.subscription_id) == (staff, one.dismiss_reason, one.subscription_id)
    assert entry.details["differences"] == one.differences


def test_a_viewer_cannot_dismiss(client):
    viewer = UserFactory(username="viewer", is_superuser=False, is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_drift"))
    client.force_login(viewer)
    one = drift()
    client.post(LIST, {"action": "dismiss", "_selected_action": [one.pk], "apply": "1", "reason": "x"})
    one.refresh_from_db()
    assert one.dismissed_at is None


def test_the_daily_count_per_store_and_the_store_budgets_are_above_the_list(client, staff, settings, fake_xsolla):
    drift("google")
    drift("google")
    drift("apple", days_ago=1)
    store_budgets.pause("xsolla", retry_after=300)

    response = client.get(LIST)

    rows = response.context["daily_rows"]
    stores = response.context["daily_stores"]
    assert stores == ["apple", "google"]
    assert rows[0]["counts"] == [0, 2] and rows[1]["counts"] == [1, 0] and rows[0]["total"] == 2
    page = response.content.decode()
    assert "Drifts found per day and store" in page and "Store API budget in use" in page
    budgets = {b["store"]: b for b in response.context["budgets"]}
    assert budgets["google"]["day"] == {"used": 0, "limit": settings.STORE_BUDGET_GOOGLE_PER_DAY}
    assert budgets["xsolla"]["paused_until"] is not None and "paused until" in page


def test_open_drifts_of_the_last_day_and_week_need_attention(client, staff):
    drift("google")
    drift("apple", days_ago=3)
    drift("stripe", days_ago=10)
    done = drift("xsolla")
    done.dismissed_at = timezone.now()
    done.save()

    page = client.get(reverse("admin:index")).content.decode()

    assert "Drifts found in the last day" in page and "Drifts found in the last week" in page
    rows = {row.label: row for row in needs_attention()}
    assert rows["Drifts found in the last day"].count == 1 and rows["Drifts found in the last week"].count == 2
    assert listed(client, **dict(parse_qsl(urlsplit(rows["Drifts found in the last week"].url).query))) == {
        d.pk for d in Drift.objects.filter(dismissed_at__isnull=True, found_at__gte=timezone.now() - timedelta(days=7))}


def test_health_shows_each_stores_budget(client, fake_xsolla, settings):
    settings.STORE_BUDGET_XSOLLA_PER_MINUTE = 50
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1"))
    for _ in range(3):
        xsolla_client.subscription_get("10")
    fake_xsolla.fail_next(429, retry_after="90")
    with pytest.raises(StoreRateLimited, match="429"):
        xsolla_client.subscription_get("10")

    body = client.get("/health").json()

    xsolla = body["store_budgets"]["xsolla"]
    assert xsolla["minute"] == {"used": 4, "limit": 50}
    assert xsolla["day"] == {"used": 4, "limit": 0}  # Xsolla publishes no daily quota: none by default
    assert xsolla["paused_until"] is not None
    assert body["store_budgets"]["google"]["day"]["limit"] == 200_000
    assert set(body["store_budgets"]) == {"stripe", "apple", "google", "xsolla"}
