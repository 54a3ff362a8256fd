"""POST /api/subscriptions/<id>/cancel for an Xsolla subscription: non_renewing at Xsolla (through the
fake subscriptions API), access kept until the next charge date."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from billing.models import Subscription
from billing.statuses import Status
from tests.api_support import api_key, with_key

from .conftest import PROJECT_ID, fixture_bytes, process

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager():
    clear_api_key_cache()
    return with_key(api_key("manage"))


@pytest.fixture
def active_subscription(fake_xsolla, xsolla):
    next_charge = (timezone.now() + timedelta(days=9)).replace(microsecond=0)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567",
                                                          date_next_charge=next_charge.isoformat()))
    process(xsolla, fixture_bytes("docs/update_subscription"))
    sub = Subscription.objects.get()
    assert sub.status == Status.ACTIVE
    return sub, next_charge


def test_cancel_is_at_period_end_through_xsolla(client, manager, fake_xsolla, active_subscription):
    sub, next_charge = active_subscription

    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **manager)

    assert response.status_code == 200, response.content
    item = response.json()
    assert item["status"] == "CANCELED" and item["is_entitled"] is True and item["auto_renew"] is False
    assert item["expires_at"] == next_charge.isoformat().replace("+00:00", "Z")
    put = fake_xsolla.requests[-1]
    assert (put["method"], put["path"], put["body"]) == (
        "PUT", f"/projects/{PROJECT_ID}/users/1234567/subscriptions/10", {"status": "non_renewing"})
    assert sub.status_changes.order_by("-id").first().cause == "api"


def test_xsolla_down_is_502_and_nothing_changes(client, manager, fake_xsolla, active_subscription):
    sub, _ = active_subscription
    fake_xsolla.fail_next(503)

    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **manager)

    assert response.status_code == 502 and response.json()["error"]["code"] == "store_unavailable"
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE and fake_xsolla.subscriptions["10"]["status"] == "active"
