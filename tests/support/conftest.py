"""The support console's tests drive Apple's notifications through the real pipeline: the provider
suite's own fixtures (our signing chain trusted, the fake App Store Server API), imported, not copied."""

from tests.providers.apple.conftest import (  # noqa: F401
    api_key,
    apple_chain,
    apple_root_file,
    apple_settings,
    fake_appstore,
)
