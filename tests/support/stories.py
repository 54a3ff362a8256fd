"""Customers with a story, built through the real pipeline, for the support console's tests (and its
browser test)."""

from contextlib import nullcontext

from billing.models import Subscription
from billing.providers.apple.mapping import app_account_token_for_user
from billing.snapshots import Provider
from tests.fakes.apple import notification_claims, now_ms, renewal_claims, signed_body, transaction_claims
from tests.helpers import deliver

DAY = 86_400_000


def apple_lifecycle(chain, *, otid: str, user_id: int, around=nullcontext, last: str = "REFUND"):
    """A user's Apple subscription, through POST /webhooks/apple and the worker's drain: a free trial,
    its first paid period, a failed renewal (grace), the grace over (hold), expired, then the last payment
    refunded (stops after the step named `last`). Each notification is signed a minute after the one
    before (Apple's time orders them). `around()`: a context around each delivery. Returns the
    subscription and the stored webhook events."""
    token = app_account_token_for_user(user_id)
    start = now_ms() - 40 * DAY
    trial = transaction_claims(original_transaction_id=otid, price=0, offerType=1, offerDiscountType="FREE_TRIAL",
                               offerPeriod="P1W", app_account_token=token, purchase_ms=start,
                               expires_ms=start + 7 * DAY)
    paid = transaction_claims(original_transaction_id=otid, transaction_id=str(int(otid) + 1), reason="RENEWAL",
                              price=9990, app_account_token=token, purchase_ms=start + 7 * DAY,
                              expires_ms=start + 37 * DAY)
    grace_end = paid["expiresDate"] + 6 * DAY
    refunded = {**paid, "revocationDate": now_ms() - 1000, "revocationReason": 0, "revocationType": "REFUND_FULL"}
    steps = [
        ("SUBSCRIBED", "INITIAL_BUY", trial, renewal_claims(trial), 1),
        ("DID_RENEW", None, paid, renewal_claims(paid), 1),
        ("DID_FAIL_TO_RENEW", "GRACE_PERIOD", paid,
         renewal_claims(paid, isInBillingRetryPeriod=True, gracePeriodExpiresDate=grace_end), 4),
        ("GRACE_PERIOD_EXPIRED", None, paid, renewal_claims(paid, isInBillingRetryPeriod=True), 3),
        ("EXPIRED", "BILLING_RETRY", paid, renewal_claims(paid, autoRenewStatus=0, expirationIntent=2), 2),
        ("REFUND", None, refunded, renewal_claims(paid, autoRenewStatus=0), 5),
    ]
    signed = now_ms() - 10 * 60_000
    events = []
    for i, (kind, subtype, txn, renewal, status) in enumerate(steps):
        claims = notification_claims(kind, subtype, chain=chain, transaction=txn, renewal=renewal, status=status,
                                     signed_ms=signed + i * 60_000)
        with around():
            delivered = deliver("apple", signed_body(chain, claims))
        assert delivered.response.status_code == 200, delivered.response.content
        events.append(delivered.event)
        if kind == last:
            break
    return Subscription.objects.get(provider=Provider.APPLE, provider_subscription_id=otid), events
