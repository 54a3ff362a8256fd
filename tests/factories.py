"""Shared factories: one place for every test's model data."""

from datetime import timedelta

import factory
from django.utils import timezone

from accounts.models import Subscriber, User
from billing.models import Entitlement, Product, Subscription
from billing.snapshots import Environment, PeriodUnit, Provider, Snapshot
from billing.statuses import Status


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    is_superuser = True
    password = factory.django.Password("staff-password")


class SubscriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscriber

    external_id = factory.Sequence(lambda n: str(1000 + n))
    email = factory.LazyAttribute(lambda o: f"user{o.external_id}@example.com")


class EntitlementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Entitlement
        django_get_or_create = ("name",)

    name = "premium"


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("provider", "store_product_id")
        skip_postgeneration_save = True  # the entitlements hook only adds M2M rows

    provider = Provider.STRIPE
    store_product_id = factory.Sequence(lambda n: f"price_{n}")
    label = "Premium monthly"
    period_unit = PeriodUnit.MONTH
    period_value = 1
    price_minor = 999
    currency = "USD"

    @factory.post_generation
    def entitlements(self, create, extracted, **kwargs):
        if not create:
            return
        for name in extracted if extracted is not None else ["premium"]:
            self.entitlements.add(EntitlementFactory(name=name))


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    provider = Provider.STRIPE
    provider_subscription_id = factory.Sequence(lambda n: f"sub_{n:08d}")
    subscriber = factory.SubFactory(SubscriberFactory)
    product = factory.SubFactory(ProductFactory, provider=factory.SelfAttribute("..provider"))
    store_product_id = factory.LazyAttribute(lambda o: o.product.store_product_id if o.product else "")
    status = Status.ACTIVE
    period_unit = PeriodUnit.MONTH
    period_value = 1
    amount_minor = 999
    currency = "USD"
    auto_renew = True
    environment = Environment.PRODUCTION
    started_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=10))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=20))
    last_event_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=10))


# An hour ago: snapshots are placed in time relative to it (`minutes`), so their order is explicit.
T0 = timezone.now() - timedelta(hours=1)


def snapshot(status: str = Status.ACTIVE, minutes: float = 0, *, at=None, sub_id: str = "sub_1",
             provider: str = Provider.STRIPE, store_product_id: str = "price_monthly", **fields) -> Snapshot:
    """The one snapshot builder of the tests: a store's state of `sub_id`, observed `minutes` after T0
    (or `at`), with any other Snapshot field given by name."""
    observed_at = at if at is not None else T0 + timedelta(minutes=minutes)
    return Snapshot(provider=provider, provider_subscription_id=sub_id, status=status, observed_at=observed_at,
                    store_product_id=store_product_id, **fields)
