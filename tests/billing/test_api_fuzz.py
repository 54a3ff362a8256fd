"""A fuzzing pass over the REST API: schemathesis (pinned) generates requests from the published schema
(GET /api/schema/) and sends them to the WSGI application, with the suite's own fixtures behind it:
an API key with every scope and an end user's token, subscriptions in the database, and every store
configured against its local fake (tests/fakes/), so no request leaves the machine.

Both schema-valid (positive) and schema-violating (negative) requests are generated. Checks:
- no 5xx, ever;
- every answer is a status, content type and body the schema declares;
- a schema-violating request is refused (4xx);
- a schema-valid request is never refused as malformed (400 `invalid` / `parse_error`): the schema
  promises nothing it does not accept (a store refusing the purchase is another, documented answer).
A 429 (rate limits) is not a failure: it is counted and its request is not checked further.

Examples are bounded (EXAMPLES per operation and mode) and derandomized: the same requests every run."""

import itertools
import json
import time
from collections import Counter
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from billing.statuses import Status
from tests.api_support import api_key as make_api_key
from tests.api_support import configure_jwt, token
from tests.factories import SubscriberFactory, SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db

EXAMPLES = 150  # per operation (its coverage phase, then random cases; both modes)
END_USER = "fuzz-user-1"
# Our own request validation's codes: a schema-valid request must never get one of these.
MALFORMED = {"invalid", "parse_error"}
# Operations whose request schema is known not to describe the body they take (none: keep it so).
LENIENT_SCHEMAS: tuple[str, ...] = ()


def schema_valid_request_not_refused_as_malformed(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    if case.operation.path.startswith(LENIENT_SCHEMAS):
        return None
    code = (json.loads(response.content or b"{}").get("error") or {}).get("code")
    if code in MALFORMED:
        raise AssertionError(f"A schema-valid request was refused as malformed ({code}): {response.content[:300]!r}")
    return None


def schema_violating_request_refused(ctx, response, case):
    if case.operation.path.startswith(LENIENT_SCHEMAS):
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          schema_violating_request_refused, schema_valid_request_not_refused_as_malformed]


@pytest.fixture
def subscriptions():
    """Some history to list and act on: the end user's (one without a known product, as a bare App Store
    transaction id leaves it), and another user's."""
    me = SubscriberFactory(external_id=END_USER)
    apple = SubscriptionFactory(subscriber=me, provider="apple", provider_subscription_id="2000000000000100",
                                product=None, store_product_id="")
    lapsed = SubscriptionFactory(subscriber=me, status=Status.ACTIVE, expires_at=timezone.now() - timedelta(days=1))
    theirs = SubscriptionFactory(subscriber=SubscriberFactory(external_id="someone-else"), provider="apple")
    return [apple.pk, lapsed.pk, theirs.pk]


@pytest.fixture
def keep_the_test_transaction(api_schema):  # after the test client's own requests, which reconnect it
    """The WSGI handler closes the database connection around each request, and with it the test's
    transaction; Django's own test client keeps it open the same way, by disconnecting that handler."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def api_schema(client):
    """The published schema, fetched as a staff member from a trusted address (whichever the deployment
    requires), run against the WSGI application."""
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.get("/api/schema/?format=json", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200, response.content[:300]
    client.logout()
    # Strings without NUL: every string of the API refuses it (400, docs/api.md "Errors"), which a schema
    # cannot say; schemathesis's own switch for such APIs.
    config = schemathesis.Config.from_dict({"generation": {"allow-x00": False}})
    schema = schemathesis.openapi.from_dict(response.json(), config=config)
    schema.app = get_wsgi_application()
    return schema


def _auth(operation, service_key: str):
    """The headers of each request: end users call /api/me (the user with subscriptions), verify and
    Stripe (for themselves: a new user each time, so that per-user rate limits do not turn the pass into
    429s); services the rest."""
    path = operation.path
    if path.startswith("/api/me/"):
        me = {"Authorization": f"Bearer {token(END_USER, expires_in=3600)}"}
        return lambda: me
    if path == "/api/subscriptions/verify" or path.startswith("/api/stripe/"):
        buyers = itertools.count(1)
        return lambda: {"Authorization": f"Bearer {token(f'fuzz-buyer-{next(buyers)}', expires_in=3600)}"}
    service = {"Authorization": f"Api-Key {service_key}"}
    return lambda: service


def _settings(examples: int) -> hypothesis_settings:
    return hypothesis_settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                               phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def _send(case, auth, tally: Counter, failures: dict) -> None:
    headers = auth()
    response = case.call(headers=headers)
    tally["requests"] += 1
    tally[f"status {response.status_code // 100}xx"] += 1
    if response.status_code == 429:  # rate limited: not a failure, nothing more to check
        tally["rate limited"] += 1
        return
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (AssertionError, BaseExceptionGroup) as exc:  # collected: one run reports every kind of failure
        kinds = [str(e).splitlines()[0] for e in getattr(exc, "exceptions", [exc])]
        mode = case.meta.generation.mode.value if case.meta else "?"
        failures.setdefault(f"{case.operation.label} [{mode}]: {'; '.join(kinds)}", str(exc)[:1500])


def _fuzz(schema, operation, auth, tally: Counter, failures: dict) -> None:
    """Schemathesis's coverage phase (boundaries: each limit, one past it, each missing or mistyped part)
    then random cases, schema-valid and schema-violating. Verify's `oneOf` body makes its coverage phase
    take ~40 s here, so verify is fuzzed only (tests/billing/test_api_input.py has its boundaries)."""
    modes = [HypothesisTestMode.FUZZING]
    if operation.path != "/api/subscriptions/verify":
        modes.insert(0, HypothesisTestMode.COVERAGE)
    test = create_test(operation=operation, test_func=lambda case: _send(case, auth, tally, failures),
                       config=HypothesisTestConfig(project=schema.config, modes=modes, settings=_settings(EXAMPLES)))
    try:
        test()
    except Unsatisfiable:  # nothing in the operation can be made schema-violating (no parameters, no body)
        tally["operations without negative examples"] += 1


def _act_on_existing_rows(operation, subscription_ids, auth, tally: Counter, failures: dict) -> None:
    """Random ids rarely name a row: the subscription actions also get the ids of rows that exist."""
    strategy = st.one_of(*(operation.as_strategy(generation_mode=GenerationMode.POSITIVE,
                                                 path_parameters={"subscription_id": str(pk)})
                           for pk in subscription_ids))
    given(case=strategy)(_settings(EXAMPLES // 2)(lambda case: _send(case, auth, tally, failures)))()


def test_fuzzing_the_api_finds_no_server_error_and_no_schema_mismatch(
        api_schema, keep_the_test_transaction, subscriptions, settings, fake_stripe, google, apple_settings, capsys):
    configure_jwt(settings)
    service_key = make_api_key("check", "read", "verify", "manage")
    tally, failures = Counter(), {}
    started, timings = time.monotonic(), {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        auth = _auth(operation, service_key)
        began = time.monotonic()
        _fuzz(api_schema, operation, auth, tally, failures)
        if "{subscription_id}" in operation.path:
            _act_on_existing_rows(operation, subscriptions, auth, tally, failures)
        timings[operation.label] = time.monotonic() - began
    summary = (f"schemathesis {schemathesis.__version__}: {len(operations)} operations, {tally['requests']} "
               f"requests (examples) in {time.monotonic() - started:.0f} s, {len(failures)} failures; "
               + ", ".join(f"{k}: {v}" for k, v in sorted(tally.items()) if k != "requests"))
    with capsys.disabled():
        print("\n" + summary)
        print("\n".join(f"  {v:5.1f} s  {k}" for k, v in timings.items()))
        print("\n".join(failures))
    assert not failures, "\n\n".join(list(failures.values())[:10])
    assert len(operations) >= 11 and tally["requests"] >= len(operations) * EXAMPLES
