"""The status rules, exhaustively: every status against every shape of dates."""

from datetime import UTC, datetime, timedelta

import pytest

from billing.statuses import Status, access_ends_at, grants_access, is_entitled, lapsed_status

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PAST, FUTURE = NOW - timedelta(days=1), NOW + timedelta(days=1)

# Written out, not imported: the contract of ARCHITECTURE.md.
ENTITLED = {"TRIAL", "ACTIVE", "CANCELED", "ON_GRACE"}
NOT_ENTITLED = {"INACTIVE", "ON_HOLD", "PAUSED", "EXPIRED", "REVOKED"}

# (expires_at, grace_until) -> entitled, for a status that grants access
DATE_CASES = [
    (None, None, True),  # open-ended (a staff grant)
    (FUTURE, None, True),
    (PAST, None, False),
    (NOW, None, False),  # access ends at the instant of expiry
    (NOW + timedelta(microseconds=1), None, True),
    (PAST, FUTURE, True),  # grace keeps access after the expiry
    (FUTURE, PAST, True),
    (PAST, PAST, False),
    (None, FUTURE, True),
    (None, PAST, False),
]


def test_there_are_exactly_nine_statuses():
    assert {s.value for s in Status} == ENTITLED | NOT_ENTITLED
    assert len(Status) == 9


@pytest.mark.parametrize("status", sorted(ENTITLED | NOT_ENTITLED))
@pytest.mark.parametrize(("expires_at", "grace_until", "entitled_if_granting"), DATE_CASES)
def test_is_entitled(status, expires_at, grace_until, entitled_if_granting):
    expected = entitled_if_granting if status in ENTITLED else False
    assert is_entitled(status, expires_at, grace_until, NOW) is expected


@pytest.mark.parametrize("status", sorted(ENTITLED | NOT_ENTITLED))
def test_grants_access_and_what_a_lapse_becomes(status):
    assert grants_access(status) is (status in ENTITLED)
    assert lapsed_status(status) == ("EXPIRED" if status in ENTITLED else status)


@pytest.mark.parametrize(("status", "expires_at", "grace_until", "ends"), [
    ("ACTIVE", FUTURE, None, FUTURE),
    ("ACTIVE", None, None, None),
    ("ON_GRACE", PAST, FUTURE, FUTURE),
    ("ON_GRACE", None, FUTURE, FUTURE),
    ("ON_GRACE", FUTURE, PAST, FUTURE),  # never before the paid period ends
    ("CANCELED", FUTURE, None, FUTURE),
    ("TRIAL", PAST, FUTURE, FUTURE),
])
def test_access_ends_at(status, expires_at, grace_until, ends):
    assert access_ends_at(status, expires_at, grace_until) == ends
