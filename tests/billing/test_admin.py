"""The admin as support and finance use it: pages render with data, search finds users by any id, and
every edit goes through an action that calls a service. What goes to a store goes to Google Play's fake
(tests/fakes/google.py) through the real adapter."""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, Subscriber
from audit.models import AuditEntry
from billing import entitlement_cache
from billing.apply import apply_snapshot
from billing.models import Entitlement, Outbox, Product, StatusChange, Subscription, Transaction
from billing.snapshots import Cause, CauseKind, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status
from tests.factories import ProductFactory, SubscriberFactory, UserFactory
from tests.fakes.google import rfc3339

pytestmark = pytest.mark.django_db

T0 = timezone.now() - timedelta(days=1)
APPLE_TOKEN = uuid.UUID("000003e9-0000-0000-0000-000000000000")


@pytest.fixture
def staff(client):
    user = UserFactory(username="support")
    client.force_login(user)
    return user


@pytest.fixture
def data():
    ProductFactory(store_product_id="price_monthly", entitlements=["premium"])
    SubscriberFactory(external_id="1001", email="ann@example.com", stripe_customer_id="cus_ann",
                      apple_app_account_token=APPLE_TOKEN)
    stripe = apply_snapshot(Snapshot(
        provider="stripe", provider_subscription_id="sub_ann", status=Status.ACTIVE, observed_at=T0,
        store_product_id="price_monthly", user_id="1001", expires_at=T0 + timedelta(days=30), amount_minor=999,
        currency="usd", raw={"id": "sub_ann", "items": [{"price": "price_monthly"}]},
        transactions=(TransactionRecord("in_ann_1", TransactionKind.PURCHASE, T0, 999, "usd"),)),
        Cause(CauseKind.WEBHOOK, ref="evt_1"))
    orphan = apply_snapshot(Snapshot(provider="google", provider_subscription_id="token-orphan",
                                     status=Status.ACTIVE, observed_at=T0, store_product_id="gp_unmapped",
                                     expires_at=T0 + timedelta(days=30)), Cause(CauseKind.WEBHOOK))
    return {"stripe": Subscription.objects.get(pk=stripe.subscription_id),
            "orphan": Subscription.objects.get(pk=orphan.subscription_id)}


def changelist(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def act(client, model, action, objects, **fields):
    post = {"action": action, "_selected_action": [o.pk for o in objects], **fields}
    return client.post(changelist(model), post, follow=True)


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_every_page_renders_with_data(client, staff, data):
    ApiKey.objects.create(name="orders", prefix="abcd1234", hashed_key="0" * 64, scopes=["check"])
    rows = [Subscriber.objects.first(), data["stripe"], Product.objects.first(), Entitlement.objects.first(),
            StatusChange.objects.first(), Transaction.objects.first(), Outbox.objects.first(),
            ApiKey.objects.first(), staff]
    for obj in rows:
        assert client.get(changelist(type(obj))).status_code == 200, type(obj)
        response = client.get(change(obj))
        assert response.status_code == 200, type(obj)
    page = client.get(change(data["stripe"])).content.decode()
    assert "in_ann_1" in page and "evt_1" in page  # transactions and history inline
    assert "&quot;items&quot;: [" in page  # the raw snapshot, pretty-printed
    subscriber_page = client.get(change(Subscriber.objects.get(external_id="1001"))).content.decode()
    assert "sub_ann" in subscriber_page and "cus_ann" in subscriber_page


def test_provider_synced_rows_cannot_be_added_edited_or_deleted(client, staff, data):
    assert client.get(reverse("admin:billing_subscription_add")).status_code == 403
    assert client.get(reverse("admin:billing_subscription_delete", args=[data["stripe"].pk])).status_code == 403
    page = client.get(change(data["stripe"])).content.decode()
    assert 'name="_save"' not in page
    assert client.get(reverse("admin:billing_transaction_add")).status_code == 403
    assert client.get(reverse("admin:billing_statuschange_add")).status_code == 403


@pytest.mark.parametrize("term", ["1001", "ann@example.com", "sub_ann", "in_ann_1", "cus_ann", str(APPLE_TOKEN)])
def test_search_subscriptions_by_any_id(client, staff, data, term):
    result = client.get(changelist(Subscription), {"q": term}).context["cl"].result_list
    assert list(result) == [data["stripe"]]


@pytest.mark.parametrize("term", ["1001", "ann", "cus_ann", str(APPLE_TOKEN), "sub_ann"])
def test_search_subscribers_by_any_id(client, staff, data, term):
    result = client.get(changelist(Subscriber), {"q": term}).context["cl"].result_list
    assert [s.external_id for s in result] == ["1001"]


def test_filters(client, staff, data):
    def listed(model, **params):
        return set(client.get(changelist(model), params).context["cl"].result_list)

    assert listed(Subscription, orphan="yes") == {data["orphan"]}
    assert listed(Subscription, orphan="no") == {data["stripe"]}
    assert listed(Subscription, provider="google") == {data["orphan"]}
    assert listed(Subscription, entitled="yes") == {data["stripe"], data["orphan"]}
    assert listed(Subscription, superseded="yes") == set()
    assert {p.store_product_id for p in listed(Product, mapping="unmapped")} == {"gp_unmapped"}


def test_grant_needs_a_reason_then_grants(client, staff, data):
    user = Subscriber.objects.get(external_id="1001")
    premium = Entitlement.objects.get(name="premium")
    response = client.post(changelist(Subscriber), {"action": "grant_access", "_selected_action": [user.pk],
                                                    "apply": "1", "entitlement": premium.pk, "reason": " "})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert not Subscription.objects.filter(provider="manual").exists()

    response = act(client, Subscriber, "grant_access", [user], apply="1", entitlement=premium.pk,
                   until="2030-01-31", reason="goodwill, ticket 7")
    grant = Subscription.objects.get(provider="manual")
    assert grant.subscriber == user and grant.expires_at.isoformat() == "2030-01-31T23:59:59+00:00"
    change_row = grant.status_changes.get()
    assert change_row.staff_user == staff and change_row.note == "goodwill, ticket 7"
    assert any("granted to user 1001" in m for m in messages_of(response))


def test_grant_form_is_shown_first(client, staff, data):
    response = client.post(changelist(Subscription), {"action": "grant_access",
                                                      "_selected_action": [data["stripe"].pk]})
    page = response.content.decode()
    assert response.status_code == 200 and 'name="reason"' in page and 'name="until"' in page


def test_extend_and_revoke_actions(client, staff, data):
    act(client, Subscriber, "grant_access", [Subscriber.objects.get(external_id="1001")], apply="1",
        entitlement=Entitlement.objects.get(name="premium").pk, until="2030-01-31", reason="promo")
    grant = Subscription.objects.get(provider="manual")
    act(client, Subscription, "extend_grant", [grant], apply="1", until="2031-06-30 12:00", reason="more promo")
    grant.refresh_from_db()
    assert grant.expires_at.isoformat() == "2031-06-30T12:00:00+00:00"

    response = act(client, Subscription, "extend_grant", [data["stripe"]], apply="1", until="2031-01-01",
                   reason="x")
    assert any("extended in its store" in m for m in messages_of(response))

    act(client, Subscription, "revoke", [grant, data["stripe"]], apply="1", reason="chargeback fraud")
    statuses = dict(Subscription.objects.filter(pk__in=[grant.pk, data["stripe"].pk]).values_list("pk", "status"))
    assert statuses == {grant.pk: "REVOKED", data["stripe"].pk: "REVOKED"}
    assert StatusChange.objects.filter(new_status="REVOKED", staff_user=staff, note="chargeback fraud").count() == 2


def test_link_orphan_to_a_user_publishes(client, staff, data, django_capture_on_commit_callbacks, redis_client):
    with django_capture_on_commit_callbacks(execute=True):
        response = act(client, Subscription, "link_to_user", [data["orphan"]], apply="1", user_id="2002",
                       reason="user sent the receipt, ticket 8")
    orphan = Subscription.objects.get(pk=data["orphan"].pk)
    assert orphan.subscriber.external_id == "2002"
    assert any("linked to user 2002" in m for m in messages_of(response))
    event = Outbox.objects.get(subscription=orphan).payload
    assert (event["userId"], event["isSubscribed"]) == ("2002", True)
    assert Outbox.objects.get(subscription=orphan).published_at is not None
    # a linked one is not moved unless asked
    response = act(client, Subscription, "link_to_user", [data["stripe"]], apply="1", user_id="2002", reason="x")
    assert any("already linked to user 1001" in m for m in messages_of(response))
    assert Subscription.objects.get(pk=data["stripe"].pk).subscriber.external_id == "1001"


def play_purchase(state: str, *, expires_at) -> dict:
    """The orphan's purchase as Google Play's subscriptionsv2.get answers it (no account id: still nobody's)."""
    purchase = {"kind": "androidpublisher#subscriptionPurchaseV2", "startTime": rfc3339(T0), "regionCode": "US",
                "subscriptionState": f"SUBSCRIPTION_STATE_{state}",
                "acknowledgementState": "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED",
                "lineItems": [{"productId": "gp_unmapped", "expiryTime": rfc3339(expires_at),
                               "autoRenewingPlan": {"autoRenewEnabled": state == "ACTIVE"}}]}
    if state == "CANCELED":
        purchase["canceledStateContext"] = {"userInitiatedCancellation": {"cancelTime": rfc3339(timezone.now())}}
    return purchase


def test_resync_from_the_store(client, staff, data, google):
    google.set_purchase("token-orphan", play_purchase("CANCELED", expires_at=T0 + timedelta(days=30)))
    page = act(client, Subscription, "resync_from_store", [data["orphan"]])
    assert 'name="reason"' in page.content.decode() and not google.calls_of("get")  # asks why first
    response = act(client, Subscription, "resync_from_store", [data["orphan"]], apply="1",
                   reason="user says they cancelled")
    assert "google:token-orphan: updated (ACTIVE → CANCELED)" in messages_of(response)
    assert [c["token"] for c in google.calls_of("get")] == ["token-orphan"]
    last = StatusChange.objects.filter(subscription=data["orphan"]).order_by("id").last()
    assert (last.new_status, last.cause, last.staff_user) == ("CANCELED", "staff", staff)
    entry = AuditEntry.objects.get(action="resync")
    assert (entry.actor_user, entry.reason, entry.subscription_id) == (staff, "user says they cancelled",
                                                                       data["orphan"].pk)
    assert (entry.details["before"]["status"], entry.details["after"]["status"]) == ("ACTIVE", "CANCELED")


def test_store_actions_are_offered_and_resync_reports(client, staff, data, google):
    page = client.get(changelist(Subscription)).content.decode()
    assert 'value="google_revoke_with_refund"' in page and 'value="google_defer_renewal"' in page
    google.set_purchase("token-orphan", play_purchase("ACTIVE", expires_at=T0 + timedelta(days=30)))
    response = act(client, Subscription, "google_revoke_with_refund", [data["orphan"]], apply="1", refund="full",
                   reason="chargeback, ticket 9")
    assert "google:token-orphan: revoked at Google with a full refund, and re-read" in messages_of(response)
    assert [c["body"] for c in google.calls_of("revoke")] == [{"revocationContext": {"fullRefund": {}}}]
    assert Subscription.objects.get(pk=data["orphan"].pk).status == Status.REVOKED

    grant_response = act(client, Subscriber, "grant_access", [Subscriber.objects.get(external_id="1001")],
                         apply="1", entitlement=Entitlement.objects.get(name="premium").pk, reason="r")
    assert grant_response.status_code == 200
    response = act(client, Subscription, "resync_from_store", [Subscription.objects.get(provider="manual")],
                   apply="1", reason="check")
    assert any("cannot be re-synced" in m for m in messages_of(response))


def test_outbox_publish_now(client, staff, data, redis_client, settings):
    waiting = list(Outbox.objects.filter(published_at__isnull=True))  # after-commit hooks did not run here
    assert waiting
    response = act(client, Outbox, "publish_now", waiting)
    assert f"Published {len(waiting)} of {len(waiting)} events" in messages_of(response)
    assert redis_client.xlen(settings.BILLING_EVENTS_STREAM) == len(waiting)
    response = act(client, Outbox, "publish_now", waiting)
    assert any("already published" in m for m in messages_of(response))


def test_api_key_shown_once_never_its_hash(client, staff):
    response = client.post(reverse("admin:accounts_apikey_add"), {"name": "orders-service",
                                                                  "scopes": ["check", "read"]}, follow=True)
    # On the page that answers the form, not in a message (tests/accounts/test_api_key_admin.py).
    assert not [m for m in messages_of(response) if "shown this once" in m]
    raw = response.content.decode().split('<code id="api-key" class="api-key-secret">')[1].split("</code>")[0]
    key = ApiKey.objects.get()
    assert (key.name, key.scopes, key.created_by) == ("orders-service", ["check", "read"], staff)
    assert ApiKey.hash(raw) == key.hashed_key and raw.startswith(f"bk_{key.prefix}_")
    page = client.get(change(key)).content.decode()
    assert key.hashed_key not in page and raw not in page
    act(client, ApiKey, "revoke", [key])
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_product_mapping_is_validated_and_refreshes_cached_answers(client, staff, data,
                                                                   django_capture_on_commit_callbacks):
    product = Product.objects.get(store_product_id="price_monthly")
    entitlement_cache.refresh_many([Subscriber.objects.get(external_id="1001").pk])
    assert entitlement_cache.get("1001")[0]["entitlements"] == ["premium"]
    form = {"provider": "stripe", "store_product_id": "price_monthly", "label": "Monthly", "period_unit": "month",
            "period_value": "1", "price_minor": "999", "currency": "usd"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(change(product), form, follow=True)
    assert any("grants nothing" in m for m in messages_of(response))
    assert product.entitlements.count() == 0 and Product.objects.get(pk=product.pk).currency == "USD"
    assert entitlement_cache.get("1001") is None  # the next check reads the new mapping

    bad = client.post(change(product), {**form, "currency": "US1"})
    assert bad.status_code == 200 and "three letters" in bad.content.decode()


def test_a_staff_member_who_may_only_view_cannot_grant_revoke_or_link(client, data):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(username="auditor", is_superuser=False)
    viewer.user_permissions.set(Permission.objects.filter(codename__in=[
        "view_subscription", "view_subscriber", "view_apikey"]))
    client.force_login(viewer)
    page = client.get(changelist(Subscription)).content.decode()
    assert client.get(changelist(Subscription)).status_code == 200
    for action in ("grant_access", "extend_grant", "revoke", "resync_from_store", "link_to_user"):
        assert f'value="{action}"' not in page

    response = act(client, Subscription, "revoke", [data["stripe"]], apply="1", reason="not allowed")
    assert Subscription.objects.get(pk=data["stripe"].pk).status == Status.ACTIVE
    assert b"Revoke access" not in response.content  # not even the confirmation page
    response = act(client, Subscriber, "grant_access", [Subscriber.objects.get(external_id="1001")], apply="1",
                   entitlement=Entitlement.objects.get(name="premium").pk, reason="not allowed")
    assert not Subscription.objects.filter(provider="manual").exists()
    key = ApiKey.objects.create(name="orders", prefix="abcd1234", hashed_key="0" * 64, scopes=["check"])
    act(client, ApiKey, "revoke", [key])
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_a_purchase_close_to_its_acknowledgement_deadline_stands_out_in_the_list(client, staff, data):
    Subscription.objects.filter(pk=data["orphan"].pk).update(acknowledgement_due_at=timezone.now() + timedelta(hours=5))
    page = client.get(changelist(Subscription)).content.decode()
    due = Subscription.objects.get(pk=data["orphan"].pk).acknowledgement_due_at
    assert f"<strong style='color:#ba2121'>{due:%Y-%m-%d %H:%M} UTC</strong>" in page.replace('"', "'")


def test_deleting_an_entitlement_drops_the_cached_answers_of_its_users(client, staff, data, redis_client,
                                                                       django_capture_on_commit_callbacks):
    entitlement_cache.refresh_many([data["stripe"].subscriber_id])
    assert entitlement_cache.get("1001")[0]["entitlements"] == ["premium"]
    premium = Entitlement.objects.get(name="premium")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:billing_entitlement_delete", args=[premium.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert entitlement_cache.get("1001") is None  # the next check reads the new mapping
    assert client.get("/api/subscriptions/check/1001").json()["entitlements"] == []
