"""End-user tokens in production: audience and issuer required, a foreign audience refused, a bounded
lifetime, and an integer user id (docs/api.md allows it) accepted."""

import time

import jwt
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tests.api_support import JWT_SECRET, UNTRUSTED, configure_jwt

pytestmark = pytest.mark.django_db


def make_token(**claims) -> str:
    now = int(time.time())
    payload = {"sub": "21", "iat": now, "exp": now + 300, "iss": "https://auth.example.com", "aud": "billing",
               **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, JWT_SECRET, algorithm="HS256")


def check(client, token: str, user_id: str = "21"):
    return client.get(f"/api/subscriptions/check/{user_id}", HTTP_AUTHORIZATION=f"Bearer {token}",
                      REMOTE_ADDR=UNTRUSTED)


def error(response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


@pytest.fixture
def jwt_settings(settings):
    configure_jwt(settings)
    settings.JWT_REQUIRE_AUDIENCE = settings.JWT_REQUIRE_ISSUER = True
    settings.JWT_MAX_LIFETIME_SECONDS = 24 * 3600
    return settings


def test_a_good_token_is_accepted(client, jwt_settings):
    assert check(client, make_token()).status_code == 200


def test_a_foreign_audience_is_refused(client, jwt_settings):
    status, code, message = error(check(client, make_token(aud="another-service")))
    assert (status, code) == (401, "invalid_token") and "audience" in message
    # Also in a list of audiences that does not name us.
    assert check(client, make_token(aud=["a", "b"])).status_code == 401
    assert check(client, make_token(aud=["a", "billing"])).status_code == 200


def test_audience_and_issuer_claims_are_required(client, jwt_settings):
    status, code, message = error(check(client, make_token(aud=None)))
    assert (status, code) == (401, "invalid_token") and "'aud'" in message
    status, code, message = error(check(client, make_token(iss=None)))
    assert (status, code) == (401, "invalid_token") and "'iss'" in message


def test_a_token_naming_an_audience_is_refused_where_none_is_configured(client, jwt_settings):
    jwt_settings.JWT_REQUIRE_AUDIENCE = False
    jwt_settings.JWT_AUDIENCE = ""
    assert check(client, make_token(aud=None)).status_code == 200
    assert check(client, make_token(aud="another-service")).status_code == 401  # issued for someone else


def test_without_audience_and_issuer_settings_every_token_is_refused(client, jwt_settings):
    jwt_settings.JWT_AUDIENCE = jwt_settings.JWT_ISSUER = ""
    status, code, message = error(check(client, make_token()))
    assert (status, code) == (401, "jwt_not_configured")
    assert "JWT_AUDIENCE" in message and "JWT_ISSUER" in message
    # ...and the system checks (run by migrate in the release step and by runserver) say so.
    with pytest.raises(SystemCheckError, match=r"accounts.E001.*JWT_AUDIENCE"):
        call_command("check", tags=["accounts"])


def test_explicitly_disabled_audience_and_issuer(client, jwt_settings):
    jwt_settings.JWT_AUDIENCE = jwt_settings.JWT_ISSUER = ""
    jwt_settings.JWT_REQUIRE_AUDIENCE = jwt_settings.JWT_REQUIRE_ISSUER = False
    assert check(client, make_token(aud=None, iss=None)).status_code == 200
    call_command("check", tags=["accounts"])  # no error


def test_a_lifetime_beyond_the_maximum_is_refused(client, jwt_settings):
    now = int(time.time())
    status, code, message = error(check(client, make_token(iat=now, exp=now + 100 * 365 * 86400)))
    assert (status, code) == (401, "invalid_token") and "longer than" in message
    # Without iat the lifetime counts from now.
    assert check(client, make_token(iat=None, exp=now + 2 * 86400)).status_code == 401
    assert check(client, make_token(iat=None, exp=now + 3600)).status_code == 200
    # Exactly the maximum is fine; a smaller maximum applies at once.
    assert check(client, make_token(iat=now, exp=now + 86400)).status_code == 200
    jwt_settings.JWT_MAX_LIFETIME_SECONDS = 600
    assert check(client, make_token(iat=now, exp=now + 3600)).status_code == 401


def test_no_exp_is_refused(client, jwt_settings):
    status, code, message = error(check(client, make_token(exp=None)))
    assert (status, code) == (401, "invalid_token") and "'exp'" in message


def test_an_integer_sub_is_accepted(client, jwt_settings):
    response = check(client, make_token(sub=21))
    assert response.status_code == 200 and response.json()["user_id"] == "21"
    assert check(client, make_token(sub=21), user_id="22").status_code == 403  # still only their own


@pytest.mark.parametrize("sub", [True, 1.5, {"id": 21}, [21], ""])
def test_a_sub_that_is_not_a_user_id_is_refused(client, jwt_settings, sub):
    status, code, message = error(check(client, make_token(sub=sub)))
    assert (status, code) == (401, "invalid_token") and "'sub'" in message


def test_errors_do_not_echo_library_text(client, jwt_settings):
    # An issued-at in the future: pyjwt's own text would name internals; ours says what is wrong.
    now = int(time.time())
    status, code, message = error(check(client, make_token(iat=now + 3600, exp=now + 7200)))
    assert (status, code) == (401, "invalid_token") and message.startswith("The bearer token is not valid yet")
