"""How long finance's daily job and the "as of" export take on a sizeable history.

    .venv/bin/python bench/metrics.py            # needs PostgreSQL

Seeds a separate database (BENCH_METRICS_DATABASE_URL, default .../billing_metrics_bench; created and
migrated, reused on later runs) with BENCH_SUBSCRIPTIONS subscriptions (default 100k: monthly USD and
yearly EUR, a few with trials), each with 2 to 4 history rows over the last 90 days and a ledger row per
payment, then prints: the seconds one day's metrics take (finance.metrics.metrics_rebuild_day: every
subscription as of two moments, the day's history and ledger rows), the rows per second of
export_subscriptions' rows (subscriptions_as_of + the row builder + CSV), and the peak RSS of this process.
"""

import os
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench/ is not a package root
import psycopg

from bench.harness import admin_url

DB_URL = os.environ.get("BENCH_METRICS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_metrics_bench")
N = int(os.environ.get("BENCH_SUBSCRIPTIONS", "100000"))
TODAY = datetime(2026, 11, 1, tzinfo=UTC)


def ensure_database() -> None:
    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(DB_URL), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    os.environ["DATABASE_URL"] = DB_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-bench-only-secret-key")
    os.environ.setdefault("REDIS_URL", "")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed() -> None:
    from django.db.models import F

    from billing.models import Product, StatusChange, Subscription, Transaction

    have = Subscription.objects.count()
    if have >= N:
        return
    monthly, _ = Product.objects.get_or_create(provider="stripe", store_product_id="price_monthly",
                                               defaults={"period_unit": "month", "period_value": 1})
    yearly, _ = Product.objects.get_or_create(provider="stripe", store_product_id="price_yearly",
                                              defaults={"period_unit": "year", "period_value": 1})
    batch = 5000
    for start in range(have, N, batch):
        subs, plans = [], []
        for i in range(start, min(start + batch, N)):
            plan = (monthly, 999, "USD", "month") if i % 4 else (yearly, 9900, "EUR", "year")
            begun = TODAY - timedelta(days=90) + timedelta(minutes=(i * 37) % (85 * 24 * 60))
            subs.append(Subscription(provider="stripe", provider_subscription_id=f"sub_bench_{i:08d}",
                                     product=plan[0], store_product_id=plan[0].store_product_id, status="ACTIVE",
                                     amount_minor=plan[1], currency=plan[2], period_unit=plan[3], period_value=1,
                                     expires_at=begun + timedelta(days=30 if plan[3] == "month" else 365)))
            plans.append((plan, begun))
        subs = Subscription.objects.bulk_create(subs)
        history, ledger = [], []
        for i, (sub, (plan, begun)) in enumerate(zip(subs, plans, strict=True), start=start):
            state = {"state_known": True, "product": plan[0], "store_product_id": plan[0].store_product_id,
                     "environment": "production", "amount_minor": plan[1], "currency": plan[2],
                     "period_unit": plan[3], "period_value": 1}
            trial = i % 10 == 0
            first = "TRIAL" if trial else "ACTIVE"
            history.append(StatusChange(subscription=sub, old_status="INACTIVE", new_status=first, occurred_at=begun,
                                        cause="webhook", expires_at=begun + timedelta(days=7 if trial else 30),
                                        **state))
            paid_at = begun + timedelta(days=7) if trial else begun
            history.append(StatusChange(subscription=sub, old_status=first, new_status="ACTIVE",
                                        kind="status" if trial else "state", occurred_at=paid_at + timedelta(days=30),
                                        cause="webhook", expires_at=paid_at + timedelta(days=60), **state))
            if i % 7 == 0:
                history.append(StatusChange(subscription=sub, old_status="ACTIVE", new_status="CANCELED",
                                            occurred_at=paid_at + timedelta(days=40), cause="webhook",
                                            expires_at=paid_at + timedelta(days=60), **state))
            for n, moment in enumerate((paid_at, paid_at + timedelta(days=30))):
                ledger.append(Transaction(provider="stripe", provider_transaction_id=f"in_bench_{i}_{n}",
                                          subscription=sub, kind="purchase" if n == 0 else "renewal",
                                          amount_minor=plan[1], currency=plan[2], occurred_at=moment))
        StatusChange.objects.bulk_create(history)
        Transaction.objects.bulk_create(ledger)
        print(f"seeded {min(start + batch, N)} / {N}", file=sys.stderr)
    # Recorded when they happened (bulk_create stamps now).
    StatusChange.objects.update(recorded_at=F("occurred_at"))
    Transaction.objects.update(recorded_at=F("occurred_at"))
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def main() -> None:
    ensure_database()
    setup_django()
    seed()
    from billing.history import subscriptions_as_of
    from billing.models import StatusChange, Transaction
    from finance.metrics import metrics_rebuild_day
    from finance.streaming import chunks
    from finance.subscription_exports import HEADER, subscription_rows

    print(f"{N} subscriptions, {StatusChange.objects.count()} history rows, {Transaction.objects.count()} "
          "ledger rows")
    for day in (TODAY.date() - timedelta(days=45), TODAY.date() - timedelta(days=2)):
        started = time.perf_counter()
        rows = metrics_rebuild_day(day)
        print(f"metrics_rebuild_day({day}): {time.perf_counter() - started:.1f} s, {rows} rows")
    moment = TODAY - timedelta(days=20)
    started, size, count = time.perf_counter(), 0, 0
    states = subscriptions_as_of(moment)
    for chunk in chunks("csv", HEADER, subscription_rows(states, moment)):
        size += len(chunk)
        count += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    count -= 1  # the header
    print(f"export_subscriptions --as-of {moment:%Y-%m-%d}: {count} rows, {size / 1e6:.1f} MB in {elapsed:.1f} s "
          f"({count / elapsed:,.0f} rows/s)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (seeding included on the first run): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
