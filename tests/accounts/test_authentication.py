"""End-user JWTs with a public key, and configuration errors."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from accounts.authentication import AuthFailed, authenticate_header, authenticate_jwt


@pytest.fixture
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_rs256_with_the_public_key_from_the_environment(settings, rsa_key):
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    settings.JWT_ALGORITHMS = ["RS256"]
    settings.JWT_PUBLIC_KEY = pem.replace("\n", "\\n")  # as it often arrives in an env var
    settings.JWT_SECRET = ""
    settings.JWT_ISSUER = settings.JWT_AUDIENCE = ""
    settings.JWT_REQUIRE_ISSUER = settings.JWT_REQUIRE_AUDIENCE = False  # explicitly: tokens without iss/aud
    settings.JWT_USER_CLAIM = "uid"
    good = jwt.encode({"uid": 77, "exp": int(time.time()) + 60}, rsa_key, algorithm="RS256")
    principal = authenticate_jwt(good)
    assert principal.is_end_user and principal.user_id == "77"
    # A token signed with HS256 (e.g. using the public key as a secret) is refused: the algorithm is pinned.
    forged = jwt.encode({"uid": 77, "exp": int(time.time()) + 60}, "whatever-secret-of-32-bytes-length!",
                        algorithm="HS256")
    with pytest.raises(AuthFailed, match="not accepted"):
        authenticate_jwt(forged)
    no_exp = jwt.encode({"uid": 77}, rsa_key, algorithm="RS256")
    with pytest.raises(AuthFailed, match="exp"):
        authenticate_jwt(no_exp)


def test_tokens_are_refused_when_not_configured(settings):
    settings.JWT_SECRET = settings.JWT_PUBLIC_KEY = ""
    with pytest.raises(AuthFailed) as exc:
        authenticate_header("Bearer abc.def.ghi")
    assert exc.value.code == "jwt_not_configured" and "JWT_SECRET" in exc.value.message


def test_malformed_token(settings):
    settings.JWT_SECRET = "x" * 32
    settings.JWT_ISSUER, settings.JWT_AUDIENCE = "https://auth.example.com", "billing"
    with pytest.raises(AuthFailed, match="Malformed"):
        authenticate_header("Bearer not-a-jwt")
