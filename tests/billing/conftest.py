import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Staff users are made with passwords; the production hasher takes ~0.5 s per hash here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
