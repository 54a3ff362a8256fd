"""The stores, for the billing tests, as the provider suites fake them: each store's real adapter and
official client configured against its local fake server (tests/fakes/). The fixtures are the
provider suites' own, imported rather than copied, so both suites always fake a store the same way.

- `fake_stripe`: FakeStripe, with STRIPE_API_BASE and the keys pointing at it;
- `google` (and `fake_play` under it): FakeGooglePlay, with the service account and API endpoint;
- `fake_xsolla` (and `xsolla` under it): FakeXsolla, with the subscriptions API credentials set;
- `apple_settings` (with `fake_appstore`, `apple_chain` and the In-App Purchase `api_key` under it): the
  fake App Store Server API, our test root trusted and the API key configured. `api_key` here is the
  fixture (an ApiKey); tests still call tests.api_support.api_key() for the billing API's own keys.

A store none of these configures keeps the test settings' defaults: no API credentials."""

from tests.providers.apple.conftest import (  # noqa: F401
    api_key,
    apple_chain,
    apple_root_file,
    apple_settings,
    fake_appstore,
)
from tests.providers.google.conftest import fake_play, google  # noqa: F401
from tests.providers.stripe.conftest import fake_stripe  # noqa: F401
from tests.providers.xsolla.conftest import fake_xsolla, xsolla  # noqa: F401
