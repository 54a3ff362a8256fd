"""Xsolla's own writes (billing/providers/xsolla/services.py), called directly: what is refused before
Xsolla is asked (no permission, no reason, an amount it never paid, another store's subscription), and
the refund request addressed by merchant and transaction at the fake."""

from decimal import Decimal

import pytest

from billing.providers.staff_changes import StoreActionError
from billing.providers.xsolla import services
from billing.statuses import Status
from tests.factories import SubscriptionFactory, UserFactory

from .conftest import MERCHANT_ID

pytestmark = pytest.mark.django_db


def test_refusals_happen_before_xsolla_is_asked(fake_xsolla, xsolla_sub, paid):
    lead = UserFactory(username="lead")
    agent = UserFactory(username="agent", is_superuser=False)
    with pytest.raises(StoreActionError, match="refund_at_store"):
        services.payment_refund_at_xsolla(subscription=xsolla_sub, amount=None, reason="x", staff_user=agent)
    with pytest.raises(StoreActionError, match="reason is required"):
        services.payment_refund_at_xsolla(subscription=xsolla_sub, amount=None, reason="", staff_user=lead)
    with pytest.raises(StoreActionError, match="more decimals than USD"):
        services.payment_refund_at_xsolla(subscription=xsolla_sub, amount=Decimal("1.001"), reason="x",
                                          staff_user=lead)
    with pytest.raises(StoreActionError, match="not a Xsolla subscription"):
        services.subscription_cancel_at_xsolla(subscription=SubscriptionFactory(provider="stripe"), when="now",
                                               reason="x", staff_user=lead)
    assert [r for r in fake_xsolla.requests if r["method"] == "PUT"] == []


def test_a_partial_refund_request_names_the_merchant_and_the_transaction(fake_xsolla, xsolla_sub, paid):
    result, message = services.payment_refund_at_xsolla(subscription=xsolla_sub, amount=Decimal("1.50"),
                                                        reason="late delivery", staff_user=UserFactory())
    assert message == "refund request accepted"  # Xsolla answers a partial refund with 204, no message
    [put] = [r for r in fake_xsolla.requests if r["method"] == "PUT"]
    assert put["path"] == f"/merchants/{MERCHANT_ID}/reports/transactions/1/partial_refund"
    assert put["body"] == {"refund_amount": 1.5, "description": "late delivery"}
    assert result.new_status == Status.ACTIVE
