"""Whether a sandbox or test purchase (Apple sandbox, Google test purchase, Stripe test mode, Xsolla
dry_run: `Subscription.environment == "sandbox"`) grants access here. The write path (billing/apply.py)
asks; a purchase that may not is still recorded, just never entitled (docs/security.md, "Proof of
purchase, test purchases").

Allowed when the store's setting says so (default: DEBUG), when the deployment is itself a test one for
that store (Apple: APPLE_ENVIRONMENT is not Production; Stripe: a test-mode key), or for the user ids
in TEST_PURCHASE_USER_IDS (QA accounts, the App Review demo account)."""

from django.conf import settings

from .snapshots import Environment, Provider

# The store's own switch for its test purchases.
ALLOW_SETTINGS = {
    Provider.APPLE: "APPLE_ALLOW_SANDBOX",
    Provider.GOOGLE: "GOOGLE_ALLOW_TEST_PURCHASES",
    Provider.STRIPE: "STRIPE_ALLOW_TEST_MODE",
    Provider.XSOLLA: "XSOLLA_ALLOW_DRY_RUN",
}


def _test_deployment(provider: str) -> bool:
    """The deployment talks to the store's test side only: its test purchases are all there is."""
    if provider == Provider.APPLE:
        return settings.APPLE_ENVIRONMENT != "Production"
    if provider == Provider.STRIPE:
        return not settings.STRIPE_LIVE_MODE
    return False


def store_allows(provider: str) -> bool:
    """Test purchases of this store grant access to everyone here."""
    name = ALLOW_SETTINGS.get(provider)
    if name is None:
        return True
    allowed = getattr(settings, name, None)
    if allowed is None:  # not set: a development machine (DEBUG) allows, anything else refuses
        allowed = settings.DEBUG
    return bool(allowed) or _test_deployment(provider)


def is_tester(user_external_id: str | None) -> bool:
    return bool(user_external_id) and str(user_external_id) in {str(u).strip() for u in settings.TEST_PURCHASE_USER_IDS}


def grants_access(provider: str, environment: str, user_external_id: str | None) -> bool:
    """Whether a subscription of this store and environment, owned by this user, may be entitled."""
    if environment != Environment.SANDBOX:
        return True
    return store_allows(provider) or is_tester(user_external_id)


def refusal_note(provider: str, store_status: str) -> str:
    """What the history says when a test purchase is recorded without access."""
    name = ALLOW_SETTINGS.get(provider, "")
    return (f"test purchase (sandbox): the store says {store_status}; recorded without access on this deployment "
            f"({name} is off and the user is not in TEST_PURCHASE_USER_IDS)")
