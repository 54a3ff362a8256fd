"""Pub/Sub sends the same OIDC token with every push until it nears expiry: a token verified against the
certificates held now is accepted again without verifying it anew, but only while those certificates
are the ones held. New certificates (a rotation) mean verifying it again."""

import pytest

from billing.providers.base import Rejected
from billing.providers.google import auth
from tests.fakes.google import SigningKey

from .conftest import push_request, push_token, subscription_notification


def _push(fake, token: str):
    return push_request(fake, subscription_notification("tok-1", 4), token=token)


def test_the_same_token_is_accepted_for_every_push(google):
    token = push_token(google)

    events = [auth.webhook_authenticate(*_push(google, token)) for _ in range(3)]

    assert len({e.dedupe_key for e in events}) == 3  # three pushes, three messages
    assert google.certs_fetches == 1


def test_a_remembered_token_is_verified_again_once_the_certificates_change(google):
    google.certs_max_age = 0  # every push finds the certificates stale and fetches them again
    token = push_token(google)
    auth.webhook_authenticate(*_push(google, token))

    google.push_key = SigningKey("rotated")  # Google no longer serves the key that signed the token
    with pytest.raises(Rejected) as refused:
        auth.webhook_authenticate(*_push(google, token))

    assert refused.value.status == 401 and refused.value.code == "invalid_token"
    assert auth.webhook_authenticate(*_push(google, push_token(google))).event_type  # a new token verifies
