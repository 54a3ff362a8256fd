"""Store budgets with Google Play's fake (billing/store_budgets.py): priorities (the reconciliation stops
where the reserve begins, verification still goes through within its share), and the drifts
verification finds (a purchase we hold whose state the store changed; a brand-new purchase is none)."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from billing import reconciliation, store_budgets
from billing.models import Drift, Subscription
from billing.statuses import Status
from billing.verification import purchase_verify
from tests.factories import SubscriberFactory, SubscriptionFactory
from tests.providers.google.conftest import load_sequence

pytestmark = pytest.mark.django_db

PURCHASE = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]["subscriptionPurchaseV2"]


def purchase(*, days: int = 30, account: str = "42") -> dict:
    data = {**PURCHASE, "startTime": timezone.now().isoformat(),
            "externalAccountIdentifiers": {"obfuscatedExternalAccountId": account}}
    data["lineItems"] = [{**PURCHASE["lineItems"][0],
                          "expiryTime": (timezone.now() + timedelta(days=days)).isoformat()}]
    return data


def google_sub(google, token: str, *, user: str, days: int = 30) -> Subscription:
    google.set_purchase(token, purchase(days=days, account=user))
    return SubscriptionFactory(provider="google", provider_subscription_id=token, status=Status.ACTIVE,
                               subscriber=SubscriberFactory(external_id=user), store_product_id="session_pro",
                               product=None, expires_at=timezone.now() + timedelta(days=days),
                               last_verified_at=timezone.now() - timedelta(days=2),
                               last_event_at=timezone.now() - timedelta(days=3))


def verify(token: str, user: str):
    with store_budgets.priority(store_budgets.VERIFY):
        return purchase_verify(provider="google", purchase={"purchase_token": token, "product_id": "session_pro"},
                               user_id=user)


def test_reconciliation_stops_where_the_reserve_begins_and_verification_still_goes_through(google, settings):
    settings.STORE_BUDGET_GOOGLE_PER_MINUTE = 8  # reconciliation: 50 % = 4; verification: 25 % = 2
    for n in range(6):
        google_sub(google, f"tok-{n}", user=f"5{n}")
    google.set_purchase("tok-new", purchase(account="77"))

    report = reconciliation.reconcile(provider="google", deadline=time.monotonic() + 1.5)

    assert report.stores["google"].checked == 4 and report.stores["google"].stopped == "budget (minute)"
    assert len(google.calls_of("get")) == 4
    [result] = verify("tok-new", "77")  # the reserve is for webhooks and verification (get + acknowledge)
    assert result.outcome == "created" and len(google.calls_of("get")) == 5
    assert len(google.calls_of("acknowledge")) == 1
    with pytest.raises(store_budgets.QuotaExceeded, match="verifying purchases"):  # its own share: 2
        verify("tok-new", "77")
    assert len(google.calls_of("get")) == 5
    assert store_budgets.usage(["google"])["google"]["minute"] == {"used": 6, "limit": 8}


def test_verification_of_a_purchase_we_hold_records_what_changed_and_a_new_one_is_no_drift(google):
    google.set_purchase("tok-held", purchase(days=30))
    verify("tok-held", "42")
    assert not Drift.objects.exists()  # a brand-new purchase being verified is not drift
    held = Subscription.objects.get(provider_subscription_id="tok-held")
    google.set_purchase("tok-held", purchase(days=60))  # renewed at Google; the renewal's webhook never came

    verify("tok-held", "42")

    drift = Drift.objects.get()
    assert (drift.subscription_id, drift.found_by) == (held.pk, "verification")
    assert set(drift.differences) == {"expires_at"}
    assert drift.differences["expires_at"]["ours"] == held.expires_at.isoformat()
    held.refresh_from_db()
    assert drift.differences["expires_at"]["store"] == held.expires_at.isoformat()
