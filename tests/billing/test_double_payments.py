"""Double payments: a customer paying twice for one entitlement lands in the admin queue (after the
write commits, and by the daily sweep), grants and trials do not count, it ends by itself when one of
the two stops paying, staff resolve it with a reason, and the verify API warns the app."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from billing import double_payments
from billing.apply import apply_snapshot
from billing.models import DoublePayment
from billing.snapshots import Cause, CauseKind
from billing.staff import manual_grant, subscription_revoke
from billing.statuses import Status
from billing.tasks import reconcile_double_payments
from tests.factories import EntitlementFactory, ProductFactory, SubscriberFactory, SubscriptionFactory, UserFactory
from tests.factories import snapshot as snap
from webhooks.attention import needs_attention

pytestmark = pytest.mark.django_db

WEBHOOK = Cause(CauseKind.WEBHOOK, ref="evt")
LATER = timezone.now() + timedelta(days=30)


@pytest.fixture
def products():
    return {"stripe": ProductFactory(provider="stripe", store_product_id="price_premium", entitlements=["premium"]),
            "apple": ProductFactory(provider="apple", store_product_id="com.example.premium", entitlements=["premium"]),
            "google": ProductFactory(provider="google", store_product_id="no_ads", entitlements=["no_ads"])}


def buy(provider, sub_id, status=Status.ACTIVE, *, user="501", product=None, minutes=0, **fields):
    store_product_id = product or {"stripe": "price_premium", "apple": "com.example.premium",
                                   "google": "no_ads"}[provider]
    fields.setdefault("expires_at", LATER)
    return apply_snapshot(snap(status, minutes, provider=provider, sub_id=sub_id, user_id=user,
                               store_product_id=store_product_id, **fields), WEBHOOK)


def test_two_stores_paying_for_one_entitlement_land_in_the_queue(products, django_capture_on_commit_callbacks,
                                                                 client):
    with django_capture_on_commit_callbacks(execute=True):
        web = buy("stripe", "sub_web")
    assert not DoublePayment.objects.exists()  # one subscription: nothing to see
    with django_capture_on_commit_callbacks(execute=True):
        ios = buy("apple", "1000000001")

    row = DoublePayment.objects.get()
    assert (row.first_id, row.second_id) == (web.subscription_id, ios.subscription_id)
    assert row.status == "open" and row.entitlements == ["premium"] and row.detected_by == "write path"
    assert row.subscriber.external_id == "501" and row.since is not None

    staff = UserFactory()
    client.force_login(staff)
    page = client.get("/admin/billing/doublepayment/").content.decode()
    assert "stripe:sub_web" in page and "apple:1000000001" in page
    assert f"/admin/billing/subscription/?id__in={web.subscription_id},{ios.subscription_id}" in page
    assert [(r.label, r.count) for r in needs_attention() if "twice" in r.label] == [("Customers paying twice", 1)]


def test_twice_in_one_store_counts_and_other_entitlements_do_not(products, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_a")
        buy("google", "token-no-ads")  # another entitlement: not a double payment
    assert not DoublePayment.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_b")
    assert DoublePayment.objects.get().entitlements == ["premium"]


def test_a_staff_grant_beside_a_paid_subscription_does_not_count(products, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_web")
    subscriber = SubscriberFactory._meta.model.objects.get(external_id="501")
    with django_capture_on_commit_callbacks(execute=True):
        manual_grant(subscriber=subscriber, until=LATER, reason="goodwill", staff_user=UserFactory(),
                     entitlement=EntitlementFactory(name="premium"))
    reconcile_double_payments()
    assert not DoublePayment.objects.exists()


def test_a_free_trial_does_not_count_until_it_converts(products, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_web")
        buy("apple", "1000000002", Status.TRIAL)
    reconcile_double_payments()
    assert not DoublePayment.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        buy("apple", "1000000002", Status.ACTIVE, minutes=5)  # the trial converts: now it is paid
    assert DoublePayment.objects.get().status == "open"


def test_a_superseded_subscription_does_not_count(products, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_old")
        buy("stripe", "sub_new", minutes=1, replaces="sub_old")  # e.g. a Google upgrade's linkedPurchaseToken
    assert not DoublePayment.objects.filter(status="open").exists()


def test_it_ends_by_itself_when_one_stops_paying(products, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_web")
        ios = buy("apple", "1000000003")
    assert DoublePayment.objects.get().status == "open"
    with django_capture_on_commit_callbacks(execute=True):
        buy("apple", "1000000003", Status.REVOKED, minutes=5)  # refunded by Apple

    row = DoublePayment.objects.get()
    assert row.status == "ended" and row.closed_at is not None
    assert f"subscription {ios.subscription_id} (apple:1000000003) is REVOKED" in row.close_reason
    assert not [r for r in needs_attention() if "twice" in r.label]
    with django_capture_on_commit_callbacks(execute=True):
        buy("apple", "1000000003", Status.ACTIVE, minutes=10)  # the refund reversed: paying twice again
    row.refresh_from_db()
    assert row.status == "open" and row.closed_at is None


def test_the_daily_sweep_finds_what_the_write_path_missed_and_ends_what_lapsed(products):
    user = SubscriberFactory(external_id="777")
    SubscriptionFactory(subscriber=user, provider="stripe", product=products["stripe"])
    lapsing = SubscriptionFactory(subscriber=user, provider="apple", product=products["apple"])
    # made directly (no write path, no after-commit check): only the sweep can see them
    assert reconcile_double_payments() == {"opened": 1, "ended": 0}
    assert DoublePayment.objects.get().detected_by == "sweep"
    assert reconcile_double_payments() == {"opened": 0, "ended": 0}  # idempotent

    type(lapsing).objects.filter(pk=lapsing.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert reconcile_double_payments() == {"opened": 0, "ended": 1}  # past its end: no longer paying
    assert "past its end" in DoublePayment.objects.get().close_reason


def test_staff_resolve_with_a_reason_in_the_audit_log_and_it_stays_closed(products, client,
                                                                          django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_web")
        buy("apple", "1000000004")
    row = DoublePayment.objects.get()
    staff = UserFactory()
    client.force_login(staff)
    url = "/admin/billing/doublepayment/"
    confirm = client.post(url, {"action": "resolve", "_selected_action": [row.pk]})
    assert confirm.status_code == 200 and "reason" in confirm.content.decode()
    without = client.post(url, {"action": "resolve", "_selected_action": [row.pk], "apply": "1", "reason": ""})
    assert without.status_code == 200  # the form again: a reason is required
    row.refresh_from_db()
    assert row.status == "open"
    done = client.post(url, {"action": "resolve", "_selected_action": [row.pk], "apply": "1",
                             "reason": "refunded the web subscription in Stripe"})
    assert done.status_code == 302
    row.refresh_from_db()
    assert (row.status, row.closed_by) == ("resolved", staff)
    assert row.close_reason == "refunded the web subscription in Stripe"
    entry = AuditEntry.objects.get(action="double_payment_resolve")
    assert entry.actor_user == staff and entry.subscriber == row.subscriber and entry.reason == row.close_reason
    reconcile_double_payments()  # both still live until the period ends: staff's word stands
    row.refresh_from_db()
    assert row.status == "resolved"


def test_a_staff_revocation_ends_it(products, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_web")
        buy("apple", "1000000005")
    sub = DoublePayment.objects.get().second
    with django_capture_on_commit_callbacks(execute=True):
        subscription_revoke(subscription=sub, reason="refunded by support", staff_user=UserFactory())
    assert DoublePayment.objects.get().status == "ended"


def test_sandbox_beside_production_is_a_tester_not_a_double_payment(products):
    user = SubscriberFactory()
    SubscriptionFactory(subscriber=user, provider="stripe", product=products["stripe"])
    SubscriptionFactory(subscriber=user, provider="apple", product=products["apple"], environment="sandbox")
    assert double_payments.sweep().opened == 0


# --- the verify API's warning -----------------------------------------------------------------------

OTID = "2000000000000900"


@pytest.fixture
def apple_store(apple_settings, apple_chain, fake_appstore):
    """The App Store's fake selling one subscription that the store says user 601 bought."""
    from accounts.authentication import clear_api_key_cache
    from billing.providers.apple.mapping import app_account_token_for_user
    from tests.fakes.apple import renewal_claims, transaction_claims

    clear_api_key_cache()
    txn = transaction_claims(original_transaction_id=OTID, app_account_token=app_account_token_for_user(601))
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    ProductFactory(provider="apple", store_product_id=txn["productId"], entitlements=["premium"])
    return txn


def verify(client, auth):
    return client.post("/api/subscriptions/verify", {"provider": "apple", "user_id": "601", "transaction_id": OTID},
                       content_type="application/json", **auth)


def test_verify_warns_the_app_when_the_purchase_makes_a_double_payment(apple_store, client, service_auth, products):
    user = SubscriberFactory(external_id="601")
    # already paying on the web, in the same (sandbox) environment as the fake App Store's purchases
    web = SubscriptionFactory(subscriber=user, provider="stripe", product=products["stripe"], environment="sandbox")

    response = verify(client, service_auth("verify"))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ACTIVE" and body["user_id"] == "601"
    [warning] = body["warnings"]
    assert warning["code"] == "double_payment" and warning["entitlements"] == ["premium"]
    assert "the web (Stripe)" in warning["message"]
    assert [(s["id"], s["provider"]) for s in warning["subscriptions"]] == [(str(web.pk), "stripe"),
                                                                            (body["id"], "apple")]
    assert DoublePayment.objects.get().status == "open"


def test_verify_without_a_double_payment_has_no_warnings(apple_store, client, service_auth, products):
    response = verify(client, service_auth("verify"))
    assert response.status_code == 200, response.json()
    assert response.json()["warnings"] == []


def test_the_after_commit_check_is_cheap_and_skipped_when_nothing_starts_or_stops_paying(
        products, django_capture_on_commit_callbacks):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_web")
    with CaptureQueriesContext(connection) as renewal, django_capture_on_commit_callbacks(execute=True):
        buy("stripe", "sub_web", minutes=5, expires_at=LATER + timedelta(days=30))  # a renewal: still ACTIVE
    assert not [q for q in renewal.captured_queries if "billing_doublepayment" in q["sql"]]
    with CaptureQueriesContext(connection) as purchase, django_capture_on_commit_callbacks(execute=True):
        buy("apple", "1000000006")
    mine = [q["sql"] for q in purchase.captured_queries if "billing_doublepayment" in q["sql"]]
    assert len(mine) <= 3, mine  # the open rows, the pair's row, the insert: besides two reads of subscriptions
    assert DoublePayment.objects.get().status == "open"
