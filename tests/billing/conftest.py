"""The stores, for the billing tests, as the provider suites fake them: each store's real adapter and
official client configured against its local fake server (tests/fakes/). The fixtures are the
provider suites' own, imported rather than copied, so both suites always fake a store the same way.

- `fake_stripe`: FakeStripe, with STRIPE_API_BASE and the keys pointing at it;
- `google` (and `fake_play` under it): FakeGooglePlay, with the service account and API endpoint;
- `fake_xsolla` (and `xsolla` under it): FakeXsolla, with the subscriptions API credentials set.

A store none of these configures keeps the test settings' defaults: no API credentials."""

from tests.providers.google.conftest import fake_play, google  # noqa: F401
from tests.providers.stripe.conftest import fake_stripe  # noqa: F401
from tests.providers.xsolla.conftest import fake_xsolla, xsolla  # noqa: F401
