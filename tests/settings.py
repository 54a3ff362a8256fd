"""The test suite's settings: the project's own (config/settings.py, read from the environment as
in production), plus the adapter that exists only in tests. Workers and servers a test starts use
this module too (DJANGO_SETTINGS_MODULE=tests.settings)."""

from config.settings import *  # noqa: F403
from config.settings import BILLING_PROVIDERS

BILLING_PROVIDERS = {**BILLING_PROVIDERS, "hooktest": "tests.webhooks.adapter.HookTestAdapter"}

# BILLING_TESTING is refused in a server or worker with DEBUG off (config/startup.py) except here: the
# servers and workers the tests start use this module.
BILLING_TESTING_ALLOWED = True

# The stores' captured fixtures are test purchases (Play license testers, Xsolla dry_run payments): the
# suite runs as a test deployment of those stores, as it runs against Apple's sandbox and Stripe's test
# mode. Tests of the production rule (tests/billing/test_sandbox_purchases.py) turn these off.
GOOGLE_ALLOW_TEST_PURCHASES = True
XSOLLA_ALLOW_DRY_RUN = True
