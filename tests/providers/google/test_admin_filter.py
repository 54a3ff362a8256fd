"""Support sees Google purchases close to their acknowledgement deadline (Google refunds after 3 days)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_subscriptions_admin_filters_purchases_near_the_acknowledgement_deadline(client):
    client.force_login(UserFactory(username="support"))
    now = timezone.now()
    due_soon = SubscriptionFactory(provider="google", provider_subscription_id="tok-due-soon",
                                   acknowledgement_due_at=now + timedelta(hours=5))
    due_later = SubscriptionFactory(provider="google", provider_subscription_id="tok-due-later",
                                    acknowledgement_due_at=now + timedelta(days=2))
    acknowledged = SubscriptionFactory(provider="google", provider_subscription_id="tok-done",
                                       acknowledgement_due_at=now + timedelta(hours=5), acknowledged_at=now)

    response = client.get("/admin/billing/subscription/", {"google_ack": "24h"})
    assert response.status_code == 200
    listed = {s.pk for s in response.context["cl"].result_list}
    assert due_soon.pk in listed
    assert due_later.pk not in listed and acknowledged.pk not in listed
    assert b"Google acknowledgement" in response.content

    awaiting = client.get("/admin/billing/subscription/", {"google_ack": "awaiting"})
    assert {s.pk for s in awaiting.context["cl"].result_list} == {due_soon.pk, due_later.pk}
