"""Writes of the product catalogue from Stripe: each Price is a billing Product (store_product_id =
the price id) for staff to map to entitlements. A catalogue, not subscription state: the
entitlement mapping staff made is never touched here."""

from django.db import IntegrityError, transaction

from billing.models import Product
from billing.snapshots import Provider

from .mapping import Price, parse_price


def product_upsert_from_price(*, price: Price) -> Product:
    values = {
        "label": price.label[:255],
        "period_unit": price.period_unit or "",
        "period_value": price.interval_count if price.period_unit else None,
        "price_minor": price.unit_amount,
        "currency": price.currency,
    }
    key = {"provider": Provider.STRIPE, "store_product_id": price.id}
    try:
        with transaction.atomic():
            product, created = Product.objects.get_or_create(**key, defaults=values)
    except IntegrityError:  # a concurrent creator won
        product, created = Product.objects.get(**key), False
    if not created:
        if not price.product_name and product.label:
            values.pop("label")  # the price came without its product expanded: keep the better label
        Product.objects.filter(pk=product.pk).update(**values)
        product.refresh_from_db()
    return product


def products_upsert_from_subscription(*, subscription: dict) -> list[Product]:
    """The prices a subscription object carries (expanded with their product, for the label)."""
    products = []
    for item in (subscription.get("items") or {}).get("data") or []:
        price = item.get("price")
        if isinstance(price, dict) and price.get("id"):
            products.append(product_upsert_from_price(price=parse_price(price)))
    return products
