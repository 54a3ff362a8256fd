"""POST /api/subscriptions/verify for the App Store (signed transaction, transaction id, legacy receipt)
and cancel, with the library's real client talking to a local fake App Store Server API. What the
store's failures become is in test_client.py, re-polls in test_repoll.py."""

import base64

import jwt
import pytest

from accounts.models import Subscriber
from billing.models import Subscription, Transaction
from billing.providers.apple.mapping import app_account_token_for_user
from tests.factories import SubscriberFactory, SubscriptionFactory
from tests.fakes.apple import (
    APP_APPLE_ID,
    BUNDLE_ID,
    AppleChain,
    app_receipt,
    renewal_claims,
    transaction_claims,
)

pytestmark = pytest.mark.django_db

OTID = "2000000000000100"
LATEST = "2000000000000105"


@pytest.fixture
def on_the_store(apple_chain, fake_appstore):
    """The App Store holds a subscription renewed once (the latest transaction is LATEST), bought by user 42
    (the app set appAccountToken to 42's integer form)."""
    txn = transaction_claims(original_transaction_id=OTID, transaction_id=LATEST, reason="RENEWAL", price=4990,
                             currency="EUR", app_account_token=app_account_token_for_user(42))
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn), also_for=("2000000000000101",))
    return txn


def verify(client, service_auth, **body):
    return client.post("/api/subscriptions/verify", data={"provider": "apple", "user_id": "42", **body},
                       content_type="application/json", **service_auth("verify"))


def test_signed_transaction_is_verified_locally_then_confirmed_with_the_api(apple_settings, apple_chain, client,
                                                                            service_auth, on_the_store,
                                                                            fake_appstore):
    from_the_app = apple_chain.sign(transaction_claims(original_transaction_id=OTID, transaction_id="2000000000000101"))
    response = verify(client, service_auth, signed_transaction=from_the_app)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["provider"], body["provider_subscription_id"], body["status"]) == ("apple", OTID, "ACTIVE")
    assert body["user_id"] == "42"
    sub = Subscription.objects.get(provider_subscription_id=OTID)
    assert sub.expires_at.timestamp() * 1000 == on_the_store["expiresDate"]
    assert (sub.amount_minor, sub.currency) == (499, "EUR")
    assert Transaction.objects.filter(provider_transaction_id=LATEST, kind="renewal").exists()

    # The API was asked with a bearer JWT signed by our In-App Purchase key (checked by the fake).
    request = fake_appstore.requests[-1]
    assert (request["method"], request["path"]) == ("GET", f"/inApps/v1/subscriptions/{OTID}")
    assert request["token"]["bid"] == BUNDLE_ID
    assert request["token"]["aud"] == "appstoreconnect-v1"
    assert request["token"]["iss"] == apple_settings.APPLE_ISSUER_ID


def test_transaction_id_is_looked_up_with_the_api(apple_settings, client, service_auth, on_the_store):
    response = verify(client, service_auth, transaction_id="2000000000000101")
    assert response.status_code == 200, response.content
    assert response.json()["provider_subscription_id"] == OTID
    assert Subscription.objects.get(provider_subscription_id=OTID).subscriber.external_id == "42"


def test_legacy_receipt_gives_its_transaction_id_to_the_api(apple_settings, apple_chain, client, service_auth,
                                                            on_the_store, fake_appstore):
    receipt = app_receipt(apple_chain, transaction_id="2000000000000101")
    response = verify(client, service_auth, receipt=receipt)
    assert response.status_code == 200, response.content
    assert fake_appstore.requests[-1]["path"] == "/inApps/v1/subscriptions/2000000000000101"
    assert response.json()["status"] == "ACTIVE"


def test_stored_app_account_token_of_the_user_is_remembered(apple_settings, apple_chain, client, service_auth,
                                                            fake_appstore):
    """A UUID token (not the integer form) proves nothing until a signed transaction ties it to the user;
    from then on the user's bare transaction ids of purchases carrying it are theirs."""
    token = "5a1a3c52-8b8b-4b8e-9d0e-1c2d3e4f5a6b"
    txn = transaction_claims(original_transaction_id=OTID, app_account_token=token)
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    assert verify(client, service_auth, signed_transaction=apple_chain.sign(txn)).status_code == 200
    assert str(Subscription.objects.get(provider_subscription_id=OTID).subscriber.apple_app_account_token) == token

    other = transaction_claims(original_transaction_id="2000000000000200", app_account_token=token)
    fake_appstore.add_subscription(apple_chain, other, renewal_claims(other))
    response = verify(client, service_auth, transaction_id="2000000000000200")
    assert response.status_code == 200, response.content
    assert response.json()["user_id"] == "42"


def test_bare_transaction_id_of_a_purchase_made_by_another_account_is_409(apple_settings, apple_chain, client,
                                                                         service_auth, fake_appstore):
    """User 42 read someone's transaction id (a screenshot, a support ticket): the App Store's data names
    nobody, and 42 holds no signed transaction, so nothing is linked."""
    txn = transaction_claims(original_transaction_id=OTID)  # bought without appAccountToken
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    for body in ({"transaction_id": OTID}, {"receipt": app_receipt(apple_chain, transaction_id=OTID)}):
        response = verify(client, service_auth, **body)
        assert response.status_code == 409, response.content
        error = response.json()["error"]
        assert error["code"] == "purchase_not_proven"
        assert "signed transaction" in error["message"]
    assert not Subscription.objects.exists()
    assert not Subscriber.objects.exists()


def test_bare_transaction_id_of_an_orphan_is_409_and_the_orphan_stays_for_support(apple_settings, apple_chain,
                                                                                 client, service_auth,
                                                                                 fake_appstore):
    SubscriptionFactory(provider="apple", provider_subscription_id=OTID, subscriber=None, environment="sandbox")
    txn = transaction_claims(original_transaction_id=OTID)
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    response = verify(client, service_auth, transaction_id=OTID)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "purchase_not_proven")
    assert Subscription.objects.get(provider_subscription_id=OTID).subscriber is None


def test_signed_transaction_links_a_purchase_whose_data_names_nobody(apple_settings, apple_chain, client,
                                                                    service_auth, fake_appstore):
    txn = transaction_claims(original_transaction_id=OTID)  # no appAccountToken
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    response = verify(client, service_auth, signed_transaction=apple_chain.sign(txn))
    assert response.status_code == 200, response.content
    assert Subscription.objects.get(provider_subscription_id=OTID).subscriber.external_id == "42"
    # Linked to 42 now: their own bare id refreshes it (nothing new is linked).
    assert verify(client, service_auth, transaction_id=OTID).status_code == 200


def test_another_users_transaction_is_a_409_naming_the_conflict(apple_settings, client, service_auth, on_the_store):
    SubscriptionFactory(provider="apple", provider_subscription_id=OTID, subscriber=SubscriberFactory(external_id="7"),
                        environment="sandbox")
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "purchase_owned_by_another_user"
    assert OTID in error["message"]
    assert Subscription.objects.get(provider_subscription_id=OTID).subscriber.external_id == "7"


def test_purchase_the_store_says_another_user_made_is_a_409_and_nothing_is_linked(apple_settings, apple_chain,
                                                                                 client, service_auth,
                                                                                 fake_appstore):
    """User 42 restores, on a shared device, a purchase the App Store says user 7 made (integer token)."""
    txn = transaction_claims(original_transaction_id=OTID, app_account_token=app_account_token_for_user(7))
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "purchase_owned_by_another_user" and OTID in error["message"]
    assert not Subscription.objects.exists()
    assert not Subscriber.objects.exists()  # 42 is not created with 7's token, nor 7 from the hint


def test_purchase_with_the_callers_own_integer_token_is_linked(apple_settings, apple_chain, client, service_auth,
                                                               fake_appstore):
    txn = transaction_claims(original_transaction_id=OTID, app_account_token=app_account_token_for_user(42))
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 200, response.content
    subscriber = Subscription.objects.get(provider_subscription_id=OTID).subscriber
    assert subscriber.external_id == "42"
    assert str(subscriber.apple_app_account_token) == app_account_token_for_user(42)


def test_purchase_whose_token_another_subscriber_holds_is_a_409(apple_settings, apple_chain, client, service_auth,
                                                                fake_appstore):
    token = "5a1a3c52-8b8b-4b8e-9d0e-1c2d3e4f5a6b"
    SubscriberFactory(external_id="user-abc", apple_app_account_token=token)
    txn = transaction_claims(original_transaction_id=OTID, app_account_token=token)
    fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "purchase_owned_by_another_user"
    assert not Subscription.objects.exists() and not Subscriber.objects.filter(external_id="42").exists()


def test_unsigned_local_testing_transaction_is_refused_without_debug(apple_settings, client, service_auth,
                                                                     fake_appstore):
    apple_settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS = True  # DEBUG stays off: not a development machine
    unsigned = jwt.encode(transaction_claims(original_transaction_id=OTID, environment="LocalTesting"),
                          "a-shared-secret-of-at-least-32-bytes!")
    response = verify(client, service_auth, signed_transaction=unsigned)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_signed_transaction" and "DEBUG" in error["message"]
    assert fake_appstore.requests == [] and not Subscription.objects.exists()


@pytest.mark.parametrize(("body", "code"), [
    ({"signed_transaction": "not-a-jws"}, "invalid_signed_transaction"),
    ({"receipt": base64.b64encode(b"definitely not PKCS#7").decode()}, "invalid_receipt"),
    ({"transaction_id": "abc"}, "invalid_transaction_id"),
    ({"transaction_id": "2000000000009999"}, "unknown_transaction"),
    ({}, "invalid"),
])
def test_invalid_purchases_are_400_with_a_clear_code(apple_settings, client, service_auth, on_the_store, body, code):
    response = verify(client, service_auth, **body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert not Subscription.objects.exists()


def test_signed_transaction_from_an_untrusted_chain_is_400_and_the_api_is_not_asked(apple_settings, client,
                                                                                    service_auth, on_the_store,
                                                                                    fake_appstore):
    forged = AppleChain(name="Forger").sign(transaction_claims(original_transaction_id=OTID))
    response = verify(client, service_auth, signed_transaction=forged)
    assert response.status_code == 400
    assert "VERIFICATION_FAILURE" in response.json()["error"]["message"]
    assert fake_appstore.requests == []


def test_receipt_without_purchases_is_400(apple_settings, apple_chain, client, service_auth):
    response = verify(client, service_auth, receipt=app_receipt(apple_chain, transaction_id=None))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "receipt_without_purchase")


def test_production_first_then_sandbox(apple_settings, client, service_auth, on_the_store, fake_appstore):
    apple_settings.APPLE_ENVIRONMENT = "Production"
    fake_appstore.script.append((404, {"errorCode": 4040010, "errorMessage": "Transaction id not found."}))
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 200, response.content
    assert response.json()["environment"] == "sandbox"
    assert len(fake_appstore.requests) == 2


def test_sandbox_purchase_is_recorded_without_access_where_sandbox_is_not_allowed(apple_settings, apple_chain,
                                                                                  client, service_auth, on_the_store):
    apple_settings.APPLE_ENVIRONMENT = "Production"
    apple_settings.APPLE_ALLOW_SANDBOX = False
    response = verify(client, service_auth, signed_transaction=apple_chain.sign(on_the_store))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["environment"], body["status"], body["is_entitled"]) == ("sandbox", "INACTIVE", False)
    check = client.get("/api/subscriptions/check/42", **service_auth("check")).json()
    assert check["is_subscribed"] is False

    apple_settings.TEST_PURCHASE_USER_IDS = ["42"]  # a listed tester (e.g. the App Review demo account)
    response = verify(client, service_auth, signed_transaction=apple_chain.sign(on_the_store))
    assert (response.json()["status"], response.json()["is_entitled"]) == ("ACTIVE", True)


def test_verify_without_an_api_key_configured_is_503_naming_the_settings(apple_settings, client, service_auth):
    apple_settings.APPLE_KEY_ID = ""
    response = verify(client, service_auth, transaction_id=OTID)
    assert response.status_code == 503
    assert "APPLE_KEY_ID" in response.json()["error"]["message"]


def test_cancel_is_409_saying_where_the_user_manages_it(apple_settings, client, service_auth):
    sub = SubscriptionFactory(provider="apple", provider_subscription_id=OTID, environment="sandbox",
                              subscriber=SubscriberFactory(external_id=str(APP_APPLE_ID)))
    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", content_type="application/json",
                           **service_auth("manage"))
    assert response.status_code == 409
    assert "Settings > Apple ID > Subscriptions" in response.json()["error"]["message"]
