"""Fill the ledger's new columns (0004) for rows recorded before them, from what each row kept of the
store's payload (`raw`) and, for Google's region, the purchase the subscription holds. Only what the
stored payloads say: periods, Apple's line item ids and Stripe's fees were not kept then and stay empty
(docs/finance.md "The ledger"). Batched, so a large ledger is not held in memory."""

from django.db import migrations

BATCH = 2000
FIELDS = ("order_id", "charge_id", "country", "offer_kind", "refers_to", "store_product_id", "fee_minor", "net_minor",
          "settlement_currency")
APPLE_OFFERS = {1: "introductory", 2: "promotional", 3: "offer_code", 4: "promotional"}
EXPONENT_0 = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF",
              "XOF", "XPF"}
EXPONENT_3 = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}


def _text(value) -> str:
    return str(value) if value not in (None, "") else ""


def _minor(amount, currency: str):
    from decimal import Decimal, InvalidOperation

    places = 0 if currency in EXPONENT_0 else 3 if currency in EXPONENT_3 else 2
    try:
        return int((Decimal(str(amount)) * 10 ** places).to_integral_value())
    except (InvalidOperation, ValueError, TypeError):
        return None


def apple(t, raw: dict) -> dict:
    tid = _text(raw.get("transactionId"))
    offer = "free_trial" if raw.get("offerDiscountType") == "FREE_TRIAL" else APPLE_OFFERS.get(raw.get("offerType"), "")
    details = {"order_id": tid, "country": _text(raw.get("storefront"))[:3], "store_product_id": _text(raw.get("productId"))}
    if t.kind in ("refund", "chargeback"):
        return {**details, "refers_to": tid}
    return {**details, "offer_kind": offer}


def google(t, raw: dict, region: str) -> dict:
    order = _text(raw.get("orderId"))
    details = {"order_id": order, "country": region[:3]}
    if t.kind in ("refund", "chargeback"):
        return {**details, "refers_to": order}
    return {**details, "store_product_id": _text(raw.get("productId"))}


def stripe(t, raw: dict, invoice_of_charge: dict) -> dict:
    if raw.get("invoice"):
        return {"order_id": _text(raw["invoice"]), "charge_id": _text(raw.get("charge"))}
    charge = _text(raw.get("charge"))
    invoice = invoice_of_charge.get(charge, "")
    return {"charge_id": charge, "order_id": invoice, "refers_to": invoice}


def xsolla(t, raw: dict) -> dict:
    tx_id = _text((raw.get("transaction") or {}).get("id"))
    if t.kind in ("refund", "chargeback"):
        return {"order_id": tx_id, "refers_to": tx_id}
    details = raw.get("payment_details") or {}
    payout = details.get("payout") or {}
    currency = _text(payout.get("currency")).upper()
    fees = [details.get(name) or {} for name in ("xsolla_fee", "payment_method_fee")]
    money = {}
    if currency and all(_text(f.get("currency") or currency).upper() == currency for f in fees):
        net = _minor(payout.get("amount"), currency)
        fee_amounts = [_minor(f.get("amount"), currency) for f in fees if f.get("amount") is not None]
        if net is not None and None not in fee_amounts:
            money = {"fee_minor": sum(fee_amounts), "net_minor": net, "settlement_currency": currency}
    return {"order_id": tx_id, **money}


def backfill(apps, schema_editor):
    Transaction = apps.get_model("billing", "Transaction")
    # Stripe refunds and disputes name their charge; the payment naming the same charge is the invoice.
    invoice_of_charge = {}
    for raw in Transaction.objects.filter(provider="stripe", kind__in=("purchase", "renewal")).values_list(
            "raw", flat=True).iterator(chunk_size=BATCH):
        if isinstance(raw, dict) and raw.get("charge") and raw.get("invoice"):
            invoice_of_charge[str(raw["charge"])] = str(raw["invoice"])
    last_id = 0
    while True:
        batch = list(Transaction.objects.filter(id__gt=last_id, order_id="").select_related("subscription")
                     .order_by("id")[:BATCH])
        if not batch:
            break
        last_id = batch[-1].id
        changed = []
        for t in batch:
            raw = t.raw if isinstance(t.raw, dict) else {}
            if t.provider == "apple":
                details = apple(t, raw)
            elif t.provider == "google":
                region = _text((t.subscription.raw_snapshot or {}).get("regionCode")) if isinstance(
                    t.subscription.raw_snapshot, dict) else ""
                details = google(t, raw, region)
            elif t.provider == "stripe":
                details = stripe(t, raw, invoice_of_charge)
            elif t.provider == "xsolla":
                details = xsolla(t, raw)
            else:
                continue
            details = {k: v for k, v in details.items() if v not in ("", None)}
            if details:
                for field, value in details.items():
                    setattr(t, field, value)
                changed.append(t)
        if changed:
            Transaction.objects.bulk_update(changed, FIELDS, batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_ledger_fields")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True)]
