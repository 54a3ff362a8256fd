"""The limits of the API's identifiers, declared once for the views, the serializers and the schema:
what the schema promises is exactly what the views accept (anything else is a 4xx, never a 500)."""

import re

USER_ID_MAX_LENGTH = 255  # accounts.Subscriber.external_id
# 1-255 characters, none of them a control character (PostgreSQL text refuses NUL) or "/" (a path
# segment cannot hold it). Apps' ids are integers, UUIDs or opaque strings: anything else is allowed.
USER_ID_PATTERN = r"^[^/\x00-\x1f\x7f]+$"  # the length in minLength / maxLength (a counted pattern is slow to fuzz)
_USER_ID = re.compile(USER_ID_PATTERN)

BIGINT_MAX = 2**63 - 1  # our primary keys
SUBSCRIPTION_ID_PATTERN = r"^[0-9]{1,19}$"  # ASCII digits: "²".isdigit() is true, int("²") fails
_SUBSCRIPTION_ID = re.compile(SUBSCRIPTION_ID_PATTERN)

USER_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX_LENGTH, "pattern": USER_ID_PATTERN}
SUBSCRIPTION_ID_SCHEMA = {"type": "string", "pattern": SUBSCRIPTION_ID_PATTERN, "maxLength": 19,
                          "description": "Our subscription id (the `id` of a subscription item)"}

USER_ID_RULE = "a user id is 1 to 255 characters, without control characters or '/'"


def user_id_is_valid(user_id: str) -> bool:
    return len(user_id) <= USER_ID_MAX_LENGTH and _USER_ID.fullmatch(user_id) is not None


def subscription_pk(subscription_id: str) -> int | None:
    """The primary key a path's subscription id names, or None when it cannot name one."""
    if _SUBSCRIPTION_ID.fullmatch(subscription_id) is None:
        return None
    pk = int(subscription_id)
    return pk if 0 < pk <= BIGINT_MAX else None
