"""Admin login throttling (django-axes, docs/security.md "Rate limits"): five wrong passwords for one
username from one address lock that pair out for the cool-off, the right password included."""

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ADDRESS = "198.51.100.20"


def _login(password: str, *, address: str = ADDRESS, username: str = "alice") -> tuple[int, bool]:
    """(status, logged in?) of one admin login attempt from `address`, in a fresh browser."""
    browser = Client(REMOTE_ADDR=address)
    response = browser.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
    return response.status_code, "_auth_user_id" in browser.session


@pytest.fixture(autouse=True)
def alice():
    return UserFactory(username="alice")  # password "staff-password"


def test_five_wrong_passwords_lock_the_login_even_for_the_right_one():
    attempts = [_login("guess") for _ in range(5)]
    assert attempts == [(200, False)] * 4 + [(429, False)]  # the form again with its error; the 5th locks
    status, logged_in = _login("staff-password")
    assert (status, logged_in) == (429, False)
    assert _login("staff-password", address="198.51.100.21") == (302, True)  # alice elsewhere: not locked


def test_the_lockout_page_says_when_to_try_again():
    for _ in range(5):
        _login("guess")
    response = Client(REMOTE_ADDR=ADDRESS).post("/admin/login/", {"username": "alice", "password": "staff-password"})
    assert response.status_code == 429
    assert "Too many failed login attempts" in response.content.decode() and "0:15:00" in response.content.decode()


def test_the_lock_ends_after_the_cool_off():
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        for _ in range(5):
            _login("guess")
        assert _login("staff-password")[0] == 429
        traveller.shift(timedelta(minutes=16))
        assert _login("staff-password") == (302, True)


def test_a_successful_login_starts_the_count_again():
    for _ in range(4):
        _login("guess")
    assert _login("staff-password") == (302, True)
    assert [_login("guess") for _ in range(4)] == [(200, False)] * 4
    assert _login("staff-password") == (302, True)
