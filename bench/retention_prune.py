"""Benchmark of the retention job (privacy/retention.py): how long it takes over a big webhook table and
outbox, and how long its longest batch (so its longest lock) lasts.

    .venv/bin/python bench/retention_prune.py      # needs PostgreSQL and Redis

Builds a separate database (BENCH_DATABASE_URL, default .../billing_bench_retention; dropped and created
each run) from the models, fills it with BENCH_EVENTS webhook events (1 KiB bodies; 2/3 processed long
ago, the rest recent or dead) and as many published outbox rows (half of them old), then runs
`prune_retained` twice: the first run does the work, the second finds nothing left (the daily steady
state: what it costs to walk a table already pruned)."""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench/ is not a package root
from bench.harness import schema_database

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/billing_bench_retention")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))


def env() -> dict:
    return {**os.environ, "DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench-only", "DEBUG": "0",
            "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "BILLING_TESTING": "1"}


def create_database() -> None:
    import psycopg

    schema_database(DB_URL, env(), fresh=True)
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute(f"""
            INSERT INTO webhooks_webhookevent (provider, dedupe_key, event_type, status, body, headers, payload,
                payload_problem, store_ids, store_ids_text, environment, received_at, processed_at, attempts,
                done_while_failing, outcome, error, traceback)
            SELECT 'stripe', 'evt_' || g, 'invoice.paid',
                   CASE WHEN g % 30 = 0 THEN 'dead' ELSE 'processed' END,
                   convert_to(repeat('x', 1024), 'UTF8'), '{{"Stripe-Signature": "t=1,v1=x"}}', '{{"id": 1}}',
                   '', '[]', '', 'production',
                   CASE WHEN g % 3 = 0 THEN now() ELSE now() - interval '60 days' END,
                   CASE WHEN g % 3 = 0 THEN now() ELSE now() - interval '60 days' END, 1, '', '', '', ''
            FROM generate_series(1, {EVENTS}) g""")
        conn.execute(f"""
            INSERT INTO billing_outbox (event_id, payload, created_at, published_at, attempts, last_error, stream_id)
            SELECT gen_random_uuid(), '{{"userId": "1"}}',
                   CASE WHEN g % 2 = 0 THEN now() ELSE now() - interval '60 days' END, now(), 1, '', g || '-0'
            FROM generate_series(1, {EVENTS}) g""")
        conn.execute("ANALYZE")


def run() -> None:
    import django

    os.environ.update(env())
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    django.setup()
    from django.db import connection

    from privacy.retention import prune_retained

    for label in ("first run", "second run (nothing left)"):
        longest, batches = 0.0, 0
        last = [time.perf_counter()]

        def progress(n, last=last):
            nonlocal longest, batches
            now = time.perf_counter()
            longest, batches = max(longest, now - last[0]), batches + 1
            last[0] = now

        started = time.perf_counter()
        report = prune_retained(progress=progress)
        elapsed = time.perf_counter() - started
        print(f"{label}: {elapsed:.2f} s, {batches} batches, longest batch {longest * 1000:.0f} ms; "
              f"{report.as_dict()}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM webhooks_webhookevent WHERE octet_length(body) > 0")
        print(f"events with a body left: {cursor.fetchone()[0]} of {EVENTS}")


if __name__ == "__main__":
    create_database()
    run()
