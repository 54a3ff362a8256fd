"""The dj-stripe mirror: Stripe's own objects (customers, products, prices, subscriptions, invoices)
copied into dj-stripe's tables for the admin. A copy for people to look at, never read to decide
access: the unified state comes from the adapter. dj-stripe re-retrieves each object from Stripe."""

from django.conf import settings

from .client import configure_library


def event_mirror(*, event: dict) -> None:
    """Feed an already-verified event to dj-stripe (idempotent on the event id)."""
    from djstripe.models import Event  # imported late: dj-stripe's models are heavy

    configure_library()
    Event.process(data=event, api_key=settings.STRIPE_SECRET_KEY)


def subscription_mirror(*, subscription) -> None:
    """Sync one subscription (a stripe.StripeObject, as the backfill lists them) into dj-stripe."""
    from djstripe.models import Subscription

    configure_library()
    Subscription.sync_from_stripe_data(subscription, api_key=settings.STRIPE_SECRET_KEY)
