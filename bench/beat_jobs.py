"""The beat jobs at 100k, 1M and 10M subscriptions (issue 17, point 4): each job's time per run and the
query plans of the queries it issues, so that growth with the table's size shows.

    .venv/bin/python bench/beat_jobs.py [--sizes 100k,1M,10M] [--runs 3] [--reseed]    # PostgreSQL, Redis

One database per size (BENCH_BEAT_DATABASE_PREFIX, default .../billing_bench_beat_; e.g. billing_bench_beat_10m),
built from the models and seeded with server-side SQL (bench/beat_seed.py: 10% live, the same handful of due
items for every job at every size); a database already seeded at that size is reused (`--reseed` rebuilds
it). Each job's real function runs inside a transaction rolled back afterwards, so every run finds the same
work. The first run's queries are captured (connection.execute_wrapper) and each distinct one EXPLAIN
(ANALYZE, BUFFERS)'d into var/bench/beat_plans.txt. The target: bounded work, so the time per run stays flat
from 100k to 10M. The metrics day is measured as beat runs it (the day before yesterday's carry present: its
stocks carried, its cost the day's activity) and once cold (no carry: every subscription's state as of the
day, what a first run or a stale carry costs); the carry it starts from is computed and kept (committed)
before measuring when missing. A reused database gets the tables and indexes the models declare since."""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench/ is not a package root
import psycopg

from bench.beat_seed import BIG_TABLES, due_items_refresh, seed, seeded
from bench.harness import admin_url, schema_database

ROOT = Path(__file__).resolve().parent.parent
PREFIX = os.environ.get("BENCH_BEAT_DATABASE_PREFIX", "postgres://postgres@127.0.0.1:5432/billing_bench_beat_")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
PLANS = ROOT / "var" / "bench" / "beat_plans.txt"
STORES = ("stripe", "apple", "google", "xsolla")  # the stores the re-poll and reconciliation read
SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}


def env(db_url: str) -> dict:
    return {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench-only-" + "x" * 40,
            "DEBUG": "0", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "BILLING_TESTING": "1"}


def prepare(label: str, size: int, reseed: bool) -> str:
    db_url = PREFIX + label
    if not reseed:
        try:
            with psycopg.connect(db_url) as conn:
                if seeded(conn, size):
                    due_items_refresh(conn, size)
                    conn.commit()
                    print(f"{label}: reusing {db_url.rsplit('/', 1)[1]}", flush=True)
                    return db_url
        except psycopg.OperationalError:
            pass  # no such database yet
    print(f"{label}: seeding {size:,} subscriptions into {db_url.rsplit('/', 1)[1]}", flush=True)
    started = time.perf_counter()
    schema_database(db_url, env(db_url), fresh=True)
    seed(db_url, size, log=lambda line: print(line, flush=True))
    with psycopg.connect(admin_url(db_url)) as conn:
        bytes_ = conn.execute("SELECT pg_database_size(%s)", (db_url.rsplit("/", 1)[1],)).fetchone()[0]
    print(f"{label}: seeded in {time.perf_counter() - started:.0f} s, {bytes_ / 2**30:.1f} GiB", flush=True)
    return db_url


METRICS_FULL = "metrics day (finance, full: cold, once)"
ONCE = {METRICS_FULL}  # a job measured on one run only (a cold computation: tens of seconds at 10M)


# --- in the child process (one per size: Django is set up once per database) ------------------------

def _jobs() -> dict:
    """Each beat job's real function (see the module docstring); the jobs that call a store are measured
    by the selection they make before the first store call."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from billing import double_payments, outbox, reconciliation, sweeps
    from billing.providers.google import services as google_services
    from billing.providers.google.selectors import subscriptions_awaiting_acknowledgement
    from finance.metrics import metrics_rebuild_day
    from operations.alerts.lifecycle import alerts_check
    from privacy.retention import prune_retained
    from webhooks.sweep import events_sweep

    yesterday = timezone.now().date() - timedelta(days=1)

    def reconcile_selection():
        # The first batch of each store's walk (reconciliation._batches: what every run reads first).
        return sum(len(next(reconciliation._batches(p, settings.RECONCILE_BATCH), [])) for p in STORES)

    return {
        "expiry sweep (expire_lapsed)": sweeps.subscriptions_expire_lapsed,
        "re-poll selection": lambda: len(sweeps.subscriptions_repoll_batch(list(STORES))),
        "outbox relay (relay_outbox)": outbox.publish_pending,
        "google acknowledgement selection": lambda: len(list(
            subscriptions_awaiting_acknowledgement(linked_only=True)[:google_services.BATCH])),
        "reconciliation selection": reconcile_selection,
        "double payments sweep": lambda: double_payments.sweep().opened,
        "alerts check": lambda: alerts_check().as_dict().get("open", 0),
        "webhooks sweep": events_sweep,
        "retention prune": lambda: sum(prune_retained().as_dict().values()),
        "metrics day (finance, carried: steady)": lambda: metrics_rebuild_day(yesterday),
        METRICS_FULL: lambda: metrics_rebuild_day(yesterday, full=True),
    }


def _carry_ready() -> None:
    """The day before yesterday's carry, as beat's daily run finds it (computed fully and committed once)."""
    from datetime import timedelta

    from django.utils import timezone

    from finance.metrics import metrics_carry, metrics_rebuild_day

    day = timezone.now().date() - timedelta(days=2)
    if metrics_carry(day) is None:
        started = time.perf_counter()
        metrics_rebuild_day(day, full=True)
        print(f"computed the carry of {day} (full): {time.perf_counter() - started:.1f} s", file=sys.stderr,
              flush=True)


def _explain(connection, sqls: list[tuple[str, tuple]]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each distinct query shape (numbers aside), in a transaction rolled back."""
    from django.db import transaction

    seen, out = set(), []
    for sql, params in sqls:
        verb = sql.lstrip().split(None, 1)[0].upper()
        if verb not in ("SELECT", "UPDATE", "DELETE", "WITH"):
            continue
        shape = re.sub(r"\d+", "#", sql)
        if shape in seen:
            continue
        seen.add(shape)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(r[0] for r in cursor.fetchall())
            transaction.set_rollback(True)
        out.append(f"-- {sql}\n-- params: {params!r}\n{plan}\n")
    return out


def _schema_sync(connection) -> None:
    """A reused database gets the tables and the indexes the models declare now (added since it was seeded:
    reseeding 10M costs minutes)."""
    from django.apps import apps

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        present = {r[0] for r in cursor.fetchall()}
    tables = set(connection.introspection.table_names())
    with connection.schema_editor(atomic=False) as editor:
        for model in apps.get_models():
            if model._meta.managed and not model._meta.proxy and model._meta.db_table not in tables:
                print(f"creating table {model._meta.db_table}", file=sys.stderr, flush=True)
                editor.create_model(model)
        for model in apps.get_models():
            for index in model._meta.indexes:
                if index.name not in present and model._meta.db_table in BIG_TABLES:
                    print(f"creating index {index.name}", file=sys.stderr, flush=True)
                    editor.add_index(model, index)
                    editor.execute(f"ANALYZE {model._meta.db_table}")


def measure(runs: int) -> None:
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    django.setup()
    from django.db import connection, transaction

    _schema_sync(connection)
    _carry_ready()
    results = {}
    for name, job in _jobs().items():
        times, touched, captured = [], None, []

        def capture(execute, sql, params, many, context, captured=captured):
            captured.append((sql, params))
            return execute(sql, params, many, context)

        for run in range(1 if name in ONCE else runs):
            with transaction.atomic():
                if run == 0:
                    with connection.execute_wrapper(capture):
                        started = time.perf_counter()
                        touched = job()
                else:
                    started = time.perf_counter()
                    job()
                times.append(time.perf_counter() - started)
                transaction.set_rollback(True)  # every run finds the same work
            if times[-1] > 30:
                break  # one run of a job this slow says enough
        plans = _explain(connection, captured)
        results[name] = {"ms": statistics.median(times) * 1000, "runs": len(times), "touched": touched,
                         "queries": len(captured), "plans": plans}
    results[ACTIVITY] = _metrics_activity()
    print(json.dumps(results))


ACTIVITY = "metrics day's activity"  # not a job: what the carried metrics day reads grows with this


def _metrics_activity() -> dict:
    """Yesterday's history and ledger rows starting to count: the carried metrics day's work."""
    from datetime import timedelta

    from django.utils import timezone

    from billing.history import rows_entering
    from billing.models import Transaction
    from finance.metrics import day_end

    day = timezone.now().date() - timedelta(days=1)
    start, end = day_end(day - timedelta(days=1)), day_end(day)
    ledger = (Transaction.objects.filter(recorded_at__lte=end, occurred_at__lte=end)
              .exclude(recorded_at__lte=start, occurred_at__lte=start))
    return {"history": rows_entering(start, end).count(), "ledger": ledger.count()}


# --- the parent: prepare, measure each size in a child, print ----------------------------------------

def seq_scans(plans: list[str]) -> list[str]:
    """The big tables a plan scans sequentially, with the rows it read there (kept and filtered out, all
    workers); a scan that stops at a LIMIT after a few rows (an exists() probe) reads a page and is shown so."""
    found = {}
    for plan in plans:
        lines = plan.splitlines()
        for i, line in enumerate(lines):
            match = re.search(r"Seq Scan on (\w+) .*actual time=\S+ rows=(\d+) loops=(\d+)", line)
            if not match or match.group(1) not in BIG_TABLES:
                continue
            loops = int(match.group(3))
            read = int(match.group(2)) * loops
            for following in lines[i + 1:i + 4]:
                if removed := re.search(r"Rows Removed by Filter: (\d+)", following):
                    read += int(removed.group(1)) * loops
            found[match.group(1)] = max(found.get(match.group(1), 0), read)
    return sorted(f"{table} ({read:,} rows read{', a LIMIT probe' if read < 1000 else ''})"
                  for table, read in found.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1M,10M", help="of 100k, 1M, 10M (default: all three)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reseed", action="store_true", help="seed again even if a matching database exists")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.runs)
    labels = [s.strip().lower() for s in args.sizes.split(",")]
    results = {}
    for label in labels:
        db_url = prepare(label, SIZES[label], args.reseed)
        print(f"{label}: measuring ({args.runs} runs per job) ...", flush=True)
        out = subprocess.run([sys.executable, __file__, "--measure", "--runs", str(args.runs)], env=env(db_url),
                             cwd=ROOT, check=True, capture_output=True, text=True)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    activity = {label: results[label].pop(ACTIVITY) for label in labels}
    jobs = list(results[labels[0]])
    PLANS.parent.mkdir(parents=True, exist_ok=True)
    with PLANS.open("w") as f:
        for label in labels:
            for job in jobs:
                f.write(f"==== {job} @ {label} ({PREFIX}{label}) ====\n")
                f.writelines(results[label][job]["plans"])
    width = max(len(j) for j in jobs)
    head = f"{'job':<{width}} | " + " | ".join(f"{label:>16}" for label in labels)
    if len(labels) > 1:
        head += f" | {labels[-1]}/{labels[0]:<5}"
    print(f"\nms per run (median) [rows the job touched or selected]\n{head}\n{'-' * len(head)}")
    flagged = {}
    for job in jobs:
        cells = [f"{results[label][job]['ms']:>9.1f} [{results[label][job]['touched']!s:>4}]" for label in labels]
        line = f"{job:<{width}} | " + " | ".join(f"{c:>16}" for c in cells)
        if len(labels) > 1:
            line += f" | {results[labels[-1]][job]['ms'] / max(results[labels[0]][job]['ms'], 0.01):>8.1f}x"
        print(line)
        for label in labels:
            scans = seq_scans(results[label][job]["plans"])
            if scans:
                flagged.setdefault(job, set()).update(f"{t} @ {label}" for t in scans)
    print("\ntarget (issue 17): bounded work per run, so the time stays flat from 100k to 10M (ratio ~1x); "
          "the metrics day carried costs the day's activity; cold, it reads every counted subscription's state")
    for label in labels:
        rows = activity[label]["history"] + activity[label]["ledger"]
        carried = results[label]["metrics day (finance, carried: steady)"]["ms"]
        print(f"metrics day @ {label}: yesterday's activity {activity[label]['history']:,} history rows + "
              f"{activity[label]['ledger']:,} ledger rows; carried: {carried * 1000 / max(rows, 1):.1f} ms "
              "per 1,000 of them")
    print(f"query plans: {PLANS}")
    if flagged:
        for job, where in flagged.items():
            print(f"Seq Scan on a big table: {job}: {', '.join(sorted(where))}")
    else:
        print("no plan has a Seq Scan on a big table (" + ", ".join(BIG_TABLES) + ")")


if __name__ == "__main__":
    main()
