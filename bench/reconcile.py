"""Benchmark of the reconciliation walk against the store fakes, and the time a full cycle takes for 1M live
subscriptions per store within each store's default budget.

    .venv/bin/python bench/reconcile.py      # needs PostgreSQL and Redis

1. A separate database (BENCH_DATABASE_URL, default .../billing_bench_reconcile; dropped and created each
   run), its schema built from the models.
2. For each measured store (Xsolla and Google Play, through their local fakes from tests/fakes on ports
   BENCH_PORT.. (default 9400), reached over HTTP by the official clients): BENCH_SUBSCRIPTIONS (10,000)
   live subscriptions not confirmed for two days, our rows matching the store except 1 % changed at the
   store (canceled: drifts). One reconciliation run of that store in this one process (what the beat's
   per-store task does), with the budget windows off so the walk goes at its own speed. Printed:
   subscriptions/s, store calls per subscription, drifts found.
3. For 1M live subscriptions per store: the reconciliation's share of the store's default budget (per
   minute and per day, settings STORE_BUDGET_*) bounds the calls; the measured rate bounds the
   processing; a cycle takes the slower of the two. Apple and Stripe are not measured here (their fakes
   need signed JWS chains and a Stripe emulator): their processing-bound time uses the slower measured
   store's rate, labelled "est.".

The project's modules are imported inside the functions (late, on purpose): the script builds the bench
database and sets the environment before django.setup().
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: bench/ is not a package root
from bench.harness import admin_url  # noqa: E402

PY = ROOT / ".venv" / "bin" / "python"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_bench_reconcile")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
COUNT = int(os.environ.get("BENCH_SUBSCRIPTIONS", "10000"))
PORT = int(os.environ.get("BENCH_PORT", "9400"))
TARGET = 1_000_000
DRIFT_EVERY = 100  # 1 % changed at the store
STREAM = "bench:reconcile:events"

XSOLLA = {"XSOLLA_PROJECT_ID": "18404", "XSOLLA_MERCHANT_ID": "2340", "XSOLLA_API_KEY": "bench-key",
          "XSOLLA_WEBHOOK_SECRET": "bench-secret"}
GOOGLE_PACKAGE = "network.loki.messenger"


def environment(fake_xsolla_url: str, google_base: str, service_account_file: str) -> dict:
    env = {"DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "bench.settings_syncdb",
           "BILLING_EVENTS_STREAM": STREAM, "SECRET_KEY": "bench-secret-key", "DEBUG": "false",
           "LOG_LEVEL": "WARNING", "XSOLLA_API_BASE": fake_xsolla_url, **XSOLLA,
           "GOOGLE_PLAY_PACKAGE_NAME": GOOGLE_PACKAGE, "GOOGLE_SERVICE_ACCOUNT_FILE": service_account_file,
           "GOOGLE_PLAY_API_ENDPOINT": google_base, "STRIPE_SECRET_KEY": "", "APPLE_KEY_ID": "",
           "BILLING_TESTING": "0", "ALLOWED_HOSTS": "127.0.0.1", "CELERY_TASK_ALWAYS_EAGER": "1",
           # the captured Play purchases are license testers': let them grant access, as in production data
           "GOOGLE_ALLOW_TEST_PURCHASES": "1", "XSOLLA_ALLOW_DRY_RUN": "1"}
    return env


def build_database(env: dict) -> None:
    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(DB_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([PY, "manage.py", "migrate", "--run-syncdb", "--noinput", "-v", "0"], cwd=ROOT,
                   env={**os.environ, **env}, check=True)


# --- seeding (after django.setup) ------------------------------------------------------------------

def seed(provider: str, ids: list[str], template, users: list[str]) -> None:
    """Our rows for `ids`, state copied from the store's snapshot `template`, not confirmed for two days."""
    from django.utils import timezone

    from accounts.models import Subscriber
    from billing.models import Product, Subscription

    now = timezone.now()
    product, _ = Product.objects.get_or_create(provider=provider, store_product_id=template.store_product_id)
    subscribers = Subscriber.objects.bulk_create([Subscriber(external_id=u) for u in users], batch_size=2000)
    Subscription.objects.bulk_create([
        Subscription(provider=provider, provider_subscription_id=sub_id, subscriber=subscriber, product=product,
                     store_product_id=template.store_product_id, status=template.status,
                     period_unit=template.period_unit or "", period_value=template.period_value,
                     amount_minor=template.amount_minor, currency=(template.currency or "").upper(),
                     auto_renew=template.auto_renew, started_at=template.started_at,
                     current_period_start=template.current_period_start,
                     current_period_end=template.current_period_end, expires_at=template.expires_at,
                     grace_until=template.grace_until, environment=template.environment,
                     last_event_at=now - timedelta(days=3), last_verified_at=now - timedelta(days=2))
        for sub_id, subscriber in zip(ids, subscribers, strict=True)], batch_size=2000)


def template_of(adapter, provider: str, sub_id: str):
    """The snapshot the store gives for one subscription (one call), to seed rows the store agrees with."""
    from billing.models import Subscription

    probe = Subscription(provider=provider, provider_subscription_id=sub_id, status="ACTIVE")
    return adapter.fetch(probe)


def prepare_xsolla(fake) -> list[str]:
    from billing.providers import registry

    ends = (time.time() + 20 * 86400)
    ends_iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ends))
    ids = [str(100000 + n) for n in range(COUNT)]
    users = [f"x{n}" for n in range(COUNT)]
    for sub_id, user in zip(ids, users, strict=True):
        fake.put_subscription(fake.subscription(sub_id, user_id=user, date_next_charge=ends_iso))
    template = template_of(registry.get_adapter("xsolla"), "xsolla", ids[0])
    seed("xsolla", ids, template, users)
    for n, (sub_id, user) in enumerate(zip(ids, users, strict=True)):
        if n % DRIFT_EVERY == 0:  # canceled at Xsolla; its webhook never came
            fake.put_subscription(fake.subscription(sub_id, user_id=user, status="non_renewing",
                                                    date_next_charge=ends_iso))
    fake.requests.clear()
    return ids


def prepare_google(fake) -> list[str]:
    from django.utils import timezone

    from billing.providers import registry
    from tests.providers.google.conftest import load_sequence

    base = load_sequence("06_purchase_grace_hold_recover.json", user_id="0")[0]["subscriptionPurchaseV2"]
    base["startTime"] = timezone.now().isoformat()
    base["lineItems"][0]["expiryTime"] = (timezone.now() + timedelta(days=20)).isoformat()
    ids = [f"bench-token-{n}" for n in range(COUNT)]
    users = [f"g{n}" for n in range(COUNT)]

    def purchase(user: str, *, canceled: bool = False) -> dict:
        data = json.loads(json.dumps(base))
        data["externalAccountIdentifiers"] = {"obfuscatedExternalAccountId": user}
        if canceled:
            data["subscriptionState"] = "SUBSCRIPTION_STATE_CANCELED"
            data["lineItems"][0].setdefault("autoRenewingPlan", {})["autoRenewEnabled"] = False
            data["canceledStateContext"] = {"userInitiatedCancellation": {}}
        return data

    for sub_id, user in zip(ids, users, strict=True):
        fake.set_purchase(sub_id, purchase(user))
    template = template_of(registry.get_adapter("google"), "google", ids[0])
    seed("google", ids, template, users)
    for n, (sub_id, user) in enumerate(zip(ids, users, strict=True)):
        if n % DRIFT_EVERY == 0:
            fake.set_purchase(sub_id, purchase(user, canceled=True))
    fake.calls.clear()
    return ids


def measure(provider: str, calls) -> dict:
    """One reconciliation run of the store, budget windows off: its own speed."""
    from django.conf import settings

    from billing import reconciliation

    setattr(settings, f"STORE_BUDGET_{provider.upper()}_PER_MINUTE", 0)
    setattr(settings, f"STORE_BUDGET_{provider.upper()}_PER_DAY", 0)
    started = time.perf_counter()
    report = reconciliation.reconcile(provider=provider).stores[provider]
    seconds = time.perf_counter() - started
    return {"store": provider, "read": report.checked, "failed": report.failed, "drifts": report.drifts,
            "seconds": seconds, "rate": report.checked / seconds, "calls_per_sub": calls() / max(1, report.checked)}


# --- the full cycle for 1M ---------------------------------------------------------------------------

def human(seconds: float) -> str:
    if seconds == float("inf"):
        return "unbounded"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def cycle_rows(defaults: dict, measured: dict) -> list[dict]:
    slowest = min(m["rate"] for m in measured.values())
    rows = []
    for store in ("google", "apple", "stripe", "xsolla"):
        per_minute, per_day = defaults[store]
        share = defaults["reconcile_share"]
        calls = measured[store]["calls_per_sub"] if store in measured else 1.0
        by_minute = per_minute * share / 60 / calls if per_minute else float("inf")  # subscriptions/s
        by_day = per_day * share / 86400 / calls if per_day else float("inf")
        budget_rate = min(by_minute, by_day)
        rate = measured[store]["rate"] if store in measured else slowest
        budget_time, work_time = TARGET / budget_rate, TARGET / rate
        rows.append({"store": store, "per_minute": per_minute, "per_day": per_day, "share": share,
                     "budget_rate": budget_rate, "budget_time": budget_time,
                     "bound": "day budget" if by_day < by_minute else "minute budget",
                     "rate": rate, "estimated": store not in measured, "work_time": work_time,
                     "cycle": max(budget_time, work_time),
                     "limited_by": ("day budget" if by_day < by_minute else "minute budget")
                     if budget_time >= work_time else "processing (one worker)"})
    return rows


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.fakes.google import FakeGooglePlay
    from tests.fakes.xsolla import FakeXsolla

    fake_xsolla = FakeXsolla(project_id=XSOLLA["XSOLLA_PROJECT_ID"], merchant_id=XSOLLA["XSOLLA_MERCHANT_ID"],
                             api_key=XSOLLA["XSOLLA_API_KEY"]).start(port=PORT)
    fake_google = FakeGooglePlay(package=GOOGLE_PACKAGE, port=PORT + 1).start()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(fake_google.service_account_info(), fh)
    env = environment(fake_xsolla.url, fake_google.base_url, fh.name)
    try:
        print(f"building {DB_URL.rsplit('/', 1)[1]} ...", flush=True)
        build_database(env)
        os.environ.update(env)
        import django

        django.setup()
        from django.conf import settings

        from billing import store_budgets
        from billing.redis_client import get_redis

        defaults = {store: (store_budgets.budget(store).per_minute, store_budgets.budget(store).per_day)
                    for store in store_budgets.STORES}
        defaults["reconcile_share"] = (100 - settings.STORE_BUDGET_RECONCILE_RESERVE_PERCENT) / 100
        measured = {}
        for provider, prepare, calls in (
                ("xsolla", lambda: prepare_xsolla(fake_xsolla), lambda: len(fake_xsolla.requests)),
                ("google", lambda: prepare_google(fake_google), lambda: len(fake_google.calls_of("get")))):
            print(f"seeding {COUNT:,} live {provider} subscriptions ...", flush=True)
            prepare()
            print(f"reconciling {provider} ...", flush=True)
            measured[provider] = measure(provider, calls)
        report(measured, cycle_rows(defaults, measured), defaults)
        client = get_redis()
        if client is not None:
            client.delete(STREAM, *client.keys("store_budget:*"), *client.keys("reconcile:*"),
                          *client.keys("entitlements:*"))
    finally:
        fake_xsolla.stop()
        fake_google.stop()
        os.unlink(fh.name)
    return 0


def report(measured: dict, rows: list[dict], defaults: dict) -> None:
    print()
    print(f"Measured: one reconciliation run per store, {COUNT:,} live subscriptions, one process, the store's "
          "fake on localhost, budget windows off")
    print(f"{'store':8} {'read':>7} {'failed':>6} {'drifts':>6} {'seconds':>8} {'subs/s':>8} {'calls/sub':>9}")
    for m in measured.values():
        print(f"{m['store']:8} {m['read']:>7,} {m['failed']:>6} {m['drifts']:>6} {m['seconds']:>8.1f} "
              f"{m['rate']:>8.1f} {m['calls_per_sub']:>9.2f}")
    print()
    print(f"Full cycle for {TARGET:,} live subscriptions per store, default budgets, the reconciliation's share "
          f"{defaults['reconcile_share']:.0%} of each window:")
    print(f"{'store':8} {'budget/min':>10} {'budget/day':>11} {'recon subs/s':>12} {'budget-bound':>13} "
          f"{'subs/s':>10} {'processing':>11} {'full cycle':>11}  limited by")
    for r in rows:
        rate = f"{r['rate']:.0f}" + (" est." if r["estimated"] else "")
        print(f"{r['store']:8} {r['per_minute']:>10,} {r['per_day'] or 'none':>11} {r['budget_rate']:>12.1f} "
              f"{human(r['budget_time']):>13} {rate:>10} {human(r['work_time']):>11} {human(r['cycle']):>11}  "
              f"{r['limited_by']}")


if __name__ == "__main__":
    sys.exit(main())
