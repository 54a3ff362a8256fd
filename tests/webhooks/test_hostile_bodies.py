"""Hostile bodies on every store's webhook path (issue 12, items 2, 8 and 9): a NUL inside a JSON string
(PostgreSQL's jsonb refuses it), a lone surrogate (not Unicode), 100,000 nested arrays (beyond the
parser) and bytes that are not UTF-8. Unauthenticated: a 4xx in the store's own shape, nothing stored.
Authentic: answered 2xx (Xsolla: its documented 400 INVALID_PARAMETER when the type cannot be read),
stored byte for byte, failed with the reason, shown in the admin, replayable. Never a 500 (the test
client raises on one). And every store unconfigured answers 503 naming the missing settings."""

import base64
import json

import jwt
import pytest

from billing.models import Subscription
from billing.providers.xsolla.auth import authorization_header
from billing.storable import json_problem
from tests.fakes.apple import AppleChain, notification_claims, transaction_claims
from tests.fakes.google import pubsub_body
from tests.fakes.stripe import sign as stripe_sign
from tests.helpers import deliver
from tests.providers.apple.conftest import (  # noqa: F401
    api_key,
    apple_chain,
    apple_root_file,
    apple_settings,
    fake_appstore,
)
from tests.providers.google.conftest import PACKAGE, fake_play, google, push_token, subscription_notification  # noqa: F401
from tests.providers.stripe.conftest import WEBHOOK_SECRET as STRIPE_SECRET
from tests.providers.xsolla.conftest import WEBHOOK_SECRET as XSOLLA_SECRET
from tests.providers.xsolla.conftest import fixture_json, xsolla  # noqa: F401
from webhooks import replay
from webhooks.bodies import MAX_PAYLOAD_DEPTH, payload_problem
from webhooks.models import WebhookEvent
from webhooks.tasks import recover_apple_notifications

pytestmark = pytest.mark.django_db

PLACEHOLDER = b'"__HOSTILE__"'
HOSTILE = {  # the JSON text put where PLACEHOLDER is, and what the stored reason says
    "nul": (b'"a\\u0000b"', "NUL character"),
    "lone_surrogate": (b'"\\ud800"', "lone surrogate"),
    "deep_nesting": (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    "not_utf8": (b'"caf\xe9 \xff"', "not UTF-8"),
    "nan_infinity": (b"[NaN, Infinity]", "NaN or Infinity"),  # Python's parser takes them, jsonb does not
}
STORES = ("apple", "google", "stripe", "xsolla")
# Types we can still read (NUL, surrogate) vs bodies that cannot be decoded at all.
UNDECODABLE = ("deep_nesting", "not_utf8")


def hostile(data: dict, kind: str) -> bytes:
    """`data` as JSON text with the hostile fragment where its "__HOSTILE__" value is."""
    text = json.dumps(data).encode()
    assert PLACEHOLDER in text
    return text.replace(PLACEHOLDER, HOSTILE[kind][0])


# --- One authentic and one forged delivery per store --------------------------------------------

def apple_jws(chain: AppleChain, claims: bytes) -> str:
    """Signed as Apple signs (ES256, x5c chain) over these exact claim bytes."""
    return jwt.PyJWS().encode(claims, chain.leaf_key, algorithm="ES256", headers={"x5c": chain.x5c()})


def apple_delivery(kind: str, *, authentic: bool, chain: AppleChain) -> tuple[bytes, dict]:
    claims = notification_claims("DID_RENEW", chain=chain, transaction=transaction_claims())
    claims["note"] = "__HOSTILE__"
    signer = chain if authentic else AppleChain(name="Forger")
    return json.dumps({"signedPayload": apple_jws(signer, hostile(claims, kind))}).encode(), {}


def google_delivery(kind: str, *, authentic: bool, fake) -> tuple[bytes, dict]:
    envelope = json.loads(pubsub_body(subscription_notification("token-hostile", 4), message_id=f"m-{kind}"))
    envelope["message"]["attributes"] = {"note": "__HOSTILE__"}
    audience = None if authentic else "https://attacker.example/webhooks/google"
    token = push_token(fake) if audience is None else push_token(fake, audience=audience)
    return hostile(envelope, kind), {"Authorization": f"Bearer {token}"}


def stripe_delivery(kind: str, *, authentic: bool) -> tuple[bytes, dict]:
    event = {"id": f"evt_hostile_{kind}", "object": "event", "type": "customer.subscription.updated",
             "created": 1_790_000_000, "livemode": False,
             "data": {"object": {"id": "sub_hostile", "object": "subscription", "metadata": {"note": "__HOSTILE__"}}}}
    body = hostile(event, kind)
    return body, {"Stripe-Signature": stripe_sign(body, STRIPE_SECRET if authentic else "whsec_forged")}


def xsolla_delivery(kind: str, *, authentic: bool) -> tuple[bytes, dict]:
    payment = fixture_json("sdk/payment")
    payment["user"]["name"] = "__HOSTILE__"
    body = hostile(payment, kind)
    return body, {"Authorization": authorization_header(body, XSOLLA_SECRET if authentic else "forged-secret")}


@pytest.fixture
def stores(settings, apple_settings, apple_chain, google, xsolla):  # noqa: F811
    """Every store configured with its test keys; delivery(store, kind, authentic) → (body, headers)."""
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET

    def delivery(store: str, kind: str, *, authentic: bool) -> tuple[bytes, dict]:
        if store == "apple":
            return apple_delivery(kind, authentic=authentic, chain=apple_chain)
        if store == "google":
            return google_delivery(kind, authentic=authentic, fake=google)
        return {"stripe": stripe_delivery, "xsolla": xsolla_delivery}[store](kind, authentic=authentic)
    return delivery


def error_code(response) -> str:
    return response.json()["error"]["code"]


# --- Unauthenticated: a 4xx in the store's shape, nothing stored --------------------------------

@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("store", STORES)
def test_an_unauthenticated_hostile_body_is_a_4xx_and_nothing_is_stored(stores, store, kind):
    body, headers = stores(store, kind, authentic=False)
    done = deliver(store, body, headers)
    assert 400 <= done.response.status_code < 500, done.response.content
    expected = {"apple": (400, None), "google": (401, "invalid_token"), "stripe": (400, "bad_signature"),
                "xsolla": (400, "INVALID_SIGNATURE")}[store]
    assert done.response.status_code == expected[0]
    if expected[1]:
        assert error_code(done.response) == expected[1]
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("kind", HOSTILE)
def test_apple_bodies_that_are_not_a_json_document_are_400_before_authentication(stores, kind):
    """Apple's signature is inside the body: a body that cannot be decoded cannot be authentic."""
    body = b'{"signedPayload": "x.y.z", "pad": ' + HOSTILE[kind][0] + b"}"
    done = deliver("apple", body)
    if kind in UNDECODABLE:
        assert done.response.status_code == 400 and error_code(done.response) == "malformed"
    else:  # a readable document with a forged signedPayload
        assert done.response.status_code == 400
    assert not WebhookEvent.objects.exists()


# --- Authentic: stored as received, failed with the reason, visible -----------------------------

@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("store", STORES)
def test_an_authentic_hostile_body_is_stored_as_received_and_failed_with_the_reason(stores, admin_client, store,
                                                                                    kind):
    body, headers = stores(store, kind, authentic=True)
    done = deliver(store, body, headers)

    if store == "xsolla" and kind in UNDECODABLE:  # the type is unknown: Xsolla's "invalid parameter"
        assert done.response.status_code == 400 and error_code(done.response) == "INVALID_PARAMETER"
    else:
        assert 200 <= done.response.status_code < 300, done.response.content
    (event,) = WebhookEvent.objects.all()
    assert bytes(event.body) == body
    assert event.status == WebhookEvent.Status.FAILED
    reason = HOSTILE[kind][1]
    assert reason in event.error and reason in event.payload_problem
    assert event.payload == {}
    if kind not in UNDECODABLE:  # the store's own id still dedupes redeliveries
        assert not event.dedupe_key.startswith("body:sha256:")

    page = admin_client.get(f"/admin/webhooks/webhookevent/{event.pk}/change/")
    assert page.status_code == 200
    assert reason in page.content.decode()

    again = deliver(store, body, headers)
    assert again.response.status_code == done.response.status_code  # a redelivery: the same answer
    assert WebhookEvent.objects.count() == 1


def test_a_signed_xsolla_body_with_a_nul_is_answered_204_stored_and_visible(stores, admin_client):
    body, headers = stores("xsolla", "nul", authentic=True)
    done = deliver("xsolla", body, headers)
    assert done.response.status_code == 204
    assert done.event.event_type == "payment" and done.event.status == WebhookEvent.Status.FAILED
    listing = admin_client.get("/admin/webhooks/webhookevent/", {"status": "failed"})
    assert listing.status_code == 200
    assert f"/admin/webhooks/webhookevent/{done.event.pk}/change/" in listing.content.decode()


@pytest.mark.parametrize("user_id", ["\u0000", "\ud800"])
def test_xsolla_user_validation_of_an_id_nobody_can_have_is_invalid_user_not_a_500(stores, user_id):
    data = fixture_json("docs/user_validation")
    data["user"]["id"] = user_id
    body = json.dumps(data).encode()
    done = deliver("xsolla", body, {"Authorization": authorization_header(body, XSOLLA_SECRET)})
    assert done.response.status_code == 400 and error_code(done.response) == "INVALID_USER"
    assert bytes(done.event.body) == body and done.event.status == WebhookEvent.Status.FAILED


def test_google_notification_data_nested_too_deep_is_kept_as_undecodable_not_a_500(stores, google):  # noqa: F811
    data = base64.b64encode(b"[" * 100_000 + b"]" * 100_000).decode()
    body = pubsub_body(data=data, message_id="m-deep-data")
    done = deliver("google", body, {"Authorization": f"Bearer {push_token(google)}"})
    assert done.response.status_code == 200
    assert done.event.status == WebhookEvent.Status.IGNORED and "nested deeper" in done.event.outcome


@pytest.mark.parametrize("created", [b'"abc"', b"1e400", b"99999999999999999999", b"[1]"])
def test_a_signed_stripe_event_whose_time_is_not_a_time_is_stored_not_a_500(stores, created):
    event = {"id": "evt_odd_time", "object": "event", "type": "customer.created", "created": "__HOSTILE__",
             "data": {"object": {"id": "cus_1", "object": "customer"}}}
    body = json.dumps(event).encode().replace(PLACEHOLDER, created)
    done = deliver("stripe", body, {"Stripe-Signature": stripe_sign(body, STRIPE_SECRET)}, process=False)
    assert done.response.status_code == 200 and done.event.occurred_at is None and bytes(done.event.body) == body


@pytest.mark.parametrize("signature", ["t=1,v1=\u00e9", "\u00e9"])
def test_a_stripe_signature_header_that_is_not_ascii_is_400(stores, signature):
    done = deliver("stripe", b'{"id": "evt_1"}', {"Stripe-Signature": signature})
    assert done.response.status_code == 400 and error_code(done.response) == "bad_signature"
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("kind", UNDECODABLE)
def test_an_authentic_apple_notification_whose_signed_transaction_is_undecodable_is_stored_failed(
        stores, apple_chain, kind):  # noqa: F811
    transaction = transaction_claims()
    transaction["note"] = "__HOSTILE__"
    claims = notification_claims("DID_RENEW", chain=apple_chain)
    claims["data"]["signedTransactionInfo"] = apple_jws(apple_chain, hostile(transaction, kind))
    body = json.dumps({"signedPayload": apple_chain.sign(claims)}).encode()
    done = deliver("apple", body)
    assert done.response.status_code == 200
    assert done.event.status == WebhookEvent.Status.FAILED and HOSTILE[kind][1] in done.event.error
    # forged by another chain, the same nested content is refused
    claims["data"]["signedTransactionInfo"] = apple_jws(AppleChain(name="Forger"), hostile(transaction, kind))
    forged = deliver("apple", json.dumps({"signedPayload": apple_chain.sign(claims)}).encode())
    assert forged.response.status_code == 400 and WebhookEvent.objects.count() == 1


def test_hostile_notifications_recovered_from_apples_history_are_stored_failed(stores, apple_chain,  # noqa: F811
                                                                              fake_appstore):  # noqa: F811
    """The history path (apple_recover, the beat job) stores what the webhook path would."""
    fake_appstore.history = [json.loads(apple_delivery(kind, authentic=True, chain=apple_chain)[0])["signedPayload"]
                             for kind in ("nul", "deep_nesting")]
    assert "2 recovered" in recover_apple_notifications()
    events = WebhookEvent.objects.order_by("pk")
    assert [e.status for e in events] == [WebhookEvent.Status.FAILED] * 2
    assert "NUL character" in events[0].error and "nested deeper" in events[1].error


# --- Replay: processed from the stored bytes ----------------------------------------------------

def test_a_replay_processes_the_stored_bytes(stores):
    """A readable body held back for its NUL is processed from its bytes when support replays it."""
    data = fixture_json("sdk/create_subscription")
    data["user"]["name"] = "__HOSTILE__"
    body = hostile(data, "nul")
    done = deliver("xsolla", body, {"Authorization": authorization_header(body, XSOLLA_SECRET)})
    assert done.event.status == WebhookEvent.Status.FAILED and not Subscription.objects.exists()

    assert replay.event_replay_now(done.event.pk) == WebhookEvent.Status.PROCESSED
    done.event.refresh_from_db()
    assert done.event.subscriptions.get().provider_subscription_id == "10"
    assert "NUL character" in done.event.payload_problem  # still why its content is not in the payload


def test_a_replay_of_an_event_whose_type_holds_a_nul_records_it_escaped(stores):
    body = json.dumps({"notification_type": "pay\u0000ment", "user": {"id": "42"}}).encode()
    done = deliver("xsolla", body, {"Authorization": authorization_header(body, XSOLLA_SECRET)})
    assert done.response.status_code == 204 and done.event.event_type == ""
    assert replay.event_replay_now(done.event.pk) == WebhookEvent.Status.IGNORED
    done.event.refresh_from_db()
    assert "pay\\u0000ment does not change subscription state" in done.event.outcome


def test_a_replay_of_a_body_still_unreadable_fails_again_with_the_reason(stores):
    body, headers = stores("stripe", "deep_nesting", authentic=True)
    event = deliver("stripe", body, headers).event
    assert replay.event_replay_now(event.pk) == WebhookEvent.Status.FAILED
    event.refresh_from_db()
    assert "nested deeper" in event.error and event.attempts == 1


# --- Unconfigured stores: 503 naming what is missing, never a 500 -------------------------------

UNCONFIGURED = {
    "apple": {"APPLE_BUNDLE_ID": ""},
    "google": {"GOOGLE_PLAY_PACKAGE_NAME": "", "GOOGLE_PUBSUB_AUDIENCE": "", "GOOGLE_PUBSUB_VERIFICATION_TOKEN": ""},
    "stripe": {"STRIPE_WEBHOOK_SECRET": ""},
    "xsolla": {"XSOLLA_WEBHOOK_SECRET": ""},
}


@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("store", STORES)
def test_an_unconfigured_store_answers_503_naming_the_missing_settings(client, settings, store, slash):
    for name, value in UNCONFIGURED[store].items():
        setattr(settings, name, value)
    body, headers = b'{"anything": 1}', {"Authorization": "Signature " + "0" * 40}
    for kind in ("nul", "deep_nesting"):
        response = deliver(store, hostile({"x": "__HOSTILE__"}, kind), headers).response
        assert response.status_code == 503
        missing = next(iter(UNCONFIGURED[store]))
        assert error_code(response).lower() == "not_configured" and missing in response.json()["error"]["message"]
    response = client.post(f"/webhooks/{store}{slash}", data=body, content_type="application/json")
    assert response.status_code == 503
    response = client.get(f"/webhooks/{store}{slash}")
    assert response.status_code in (400, 405)  # not a POST: refused in the store's shape, never a 500
    assert not WebhookEvent.objects.exists()


# --- The payload check's fast verdict (bodies.payload_problem) is json_problem's ---------------------

def _nested(depth: int, leaf=1):
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


PAYLOADS = {
    "ordinary": {"id": "evt_1", "data": {"object": {"items": [1, 2.5, None, True, "é€😀"]}}},
    "nul in a value": {"a": ["x", "a\x00b"]},
    "nul in a key": {"a\x00": 1},
    "a backslash and u0000 as text": {"a": "\\u0000"},
    "lone surrogate in a value": {"a": "\ud800"},
    "lone surrogate in a key": {"\udfff": 1},
    "nan": {"a": float("nan")},
    "infinity": {"a": [float("-inf")]},
    "brackets inside strings": {"a": "[[[[{{{{" * 40},
    **{f"brackets, quotes and backslashes in strings beside nesting {depth}":
       {"s": ['\\"]]}}' * 20, "\\", '"[[', "\\\\\""], "n": _nested(depth)} for depth in (62, 63)},
    **{f"nested {depth}": _nested(depth) for depth in (62, 63, 64, 65, 200)},
    "nested 63 with an empty leaf": _nested(63, leaf=[]),
    "nested 64 with an empty leaf": _nested(64, leaf={}),
    "nested 5000": _nested(5000),
    "wide, shallow": {"rows": [{"n": n, "tags": [str(n)]} for n in range(100)]},
    "a tuple and an integer key": {"t": (1, "a\x00"), 3: "x"},
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_the_payload_check_gives_the_full_walks_verdict(name):
    payload = PAYLOADS[name]
    assert payload_problem(payload) == json_problem(payload, max_depth=MAX_PAYLOAD_DEPTH)
