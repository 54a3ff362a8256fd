"""Benchmark of the transactions export (1M ledger rows) over HTTP and from the command, beside a baseline.

    .venv/bin/python bench/export.py            # needs PostgreSQL; 1M rows seeded once (~1 min), reused

Seeds a separate PostgreSQL database (BENCH_DATABASE_URL, default .../billing_bench_export; created, reused
on later runs) with 10k subscribers and subscriptions and 1M ledger rows in November 2026 (generate_series,
in SQL), then serves the app as the Procfile does (`gunicorn -c python:config.gunicorn config.wsgi`: sync
worker, the configured timeout; one worker, bound to 127.0.0.1:BENCH_PORT) with bench/export_urls.py's
baseline route beside it, and measures in the same run:

- GET /api/finance/transactions (CSV, and JSON lines) for the whole month, read to the end by a client;
- the baseline: Django's documented streaming CSV (`.values_list().iterator(2000)` + `csv.writer`, a yield
  per row) over the same rows and fields, served the same way;
- `manage.py export_transactions` to a file (process start included);
- PostgreSQL's `COPY … TO STDOUT` of the table alone, read by psycopg: the ceiling.

Rows/s is data rows over wall time of the whole request. Peak RSS growth of the serving worker: its
VmHWM after the request minus its VmRSS before it (the high-water mark is reset first, /proc/PID/clear_refs).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench/ is not a package root
import psycopg

from bench.harness import schema_database

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/billing_bench_export")
PORT = int(os.environ.get("BENCH_PORT", "9110"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
SUBSCRIPTIONS = 10_000
PERIOD = {"from": "2026-11-01", "to": "2026-11-30"}
MIB = 1024 * 1024


# --- database -----------------------------------------------------------------------------------

def server_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env.update({"DATABASE_URL": DB_URL, "REDIS_URL": "", "SECRET_KEY": "bench-only", "DEBUG": "0",
                "BILLING_TESTING": "0", "LOG_LEVEL": "WARNING", "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "CELERY_TASK_ALWAYS_EAGER": "1", "DJANGO_SETTINGS_MODULE": "bench.settings_export"})
    env.update(extra)
    return env


def ensure_database() -> None:
    schema_database(DB_URL, server_env(), fresh=False, table="billing_transaction")


def seed(total: int) -> None:
    """10k subscribers and subscriptions across the four stores, and `total` ledger rows spread evenly over
    November 2026: renewals, purchases, refunds, in EUR, JPY, KWD and USD, Stripe's with fee and net."""
    with psycopg.connect(DB_URL) as conn:
        have = conn.execute("SELECT count(*) FROM billing_transaction WHERE provider_transaction_id LIKE 'bench_%'"
                            ).fetchone()[0]
        if have == total:
            return
        started = time.monotonic()
        conn.execute("DELETE FROM billing_transaction WHERE provider_transaction_id LIKE 'bench_%'")
        if not conn.execute("SELECT 1 FROM billing_subscription WHERE provider_subscription_id = 'bench_sub_1'"
                            ).fetchone():
            conn.execute("INSERT INTO accounts_subscriber (external_id, email, created_at, updated_at)"
                         " SELECT 'bench-' || g, '', now(), now() FROM generate_series(1, %s) g", (SUBSCRIPTIONS,))
            conn.execute(
                "INSERT INTO billing_subscription (provider, provider_subscription_id, subscriber_id, store_product_id,"
                " status, period_unit, period_value, amount_minor, currency, environment, created_at, updated_at,"
                " raw_snapshot)"
                " SELECT (ARRAY['stripe', 'apple', 'google', 'xsolla'])[1 + g %% 4], 'bench_sub_' || g, s.id,"
                " 'bench.monthly', 'ACTIVE', 'month', 1, 999, 'EUR', 'production', now(), now(), '{}'"
                " FROM generate_series(1, %s) g JOIN accounts_subscriber s ON s.external_id = 'bench-' || g",
                (SUBSCRIPTIONS,))
        conn.execute(
            "INSERT INTO billing_transaction (provider, provider_transaction_id, subscription_id, kind, amount_minor,"
            " currency, occurred_at, recorded_at, environment, order_id, line_item_id, charge_id, period_start,"
            " period_end, country, offer_kind, refers_to, store_product_id, fee_minor, net_minor,"
            " settlement_currency, raw)"
            " SELECT sub.provider, 'bench_tx_' || g, sub.id,"
            "  CASE WHEN g %% 50 = 0 THEN 'refund' WHEN g %% 10 = 0 THEN 'purchase' ELSE 'renewal' END,"
            "  (ARRAY[999, 980, 1250, 499])[1 + g %% 4], (ARRAY['EUR', 'JPY', 'KWD', 'USD'])[1 + g %% 4], at,"
            "  at + interval '5 minutes' + (g %% 997) * interval '1 microsecond', 'production', 'order_' || g,"
            "  CASE WHEN sub.provider = 'apple' THEN (2000000000000000 + g)::text ELSE '' END,"
            "  CASE WHEN sub.provider = 'stripe' THEN 'ch_' || g ELSE '' END, at, at + interval '1 month',"
            "  (ARRAY['DE', 'JP', 'KW', 'US'])[1 + g %% 4], CASE WHEN g %% 10 = 0 THEN 'free_trial' ELSE '' END,"
            "  CASE WHEN g %% 50 = 0 THEN 'bench_tx_' || (g - 1) ELSE '' END, 'bench.monthly',"
            "  CASE WHEN sub.provider = 'stripe' THEN 59 END, CASE WHEN sub.provider = 'stripe' THEN 940 END,"
            "  CASE WHEN sub.provider = 'stripe' THEN 'EUR' ELSE '' END, '{}'"
            " FROM generate_series(1, %s) g"
            " CROSS JOIN LATERAL (SELECT timestamptz '2026-11-01 00:00:00+00'"
            "                     + (g - 1) * (interval '30 days' / %s) AS at) t"
            " JOIN (SELECT id, provider, row_number() OVER (ORDER BY id) - 1 AS k FROM billing_subscription"
            "       WHERE provider_subscription_id LIKE 'bench_sub_%%') sub ON sub.k = g %% %s",
            (total, total, SUBSCRIPTIONS))
        conn.commit()
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE billing_transaction")
        conn.execute("ANALYZE billing_subscription")
        conn.execute("ANALYZE accounts_subscriber")
    print(f"seeded {total:,} ledger rows in {time.monotonic() - started:.0f} s", flush=True)


# --- server -------------------------------------------------------------------------------------

def gunicorn_timeout() -> int:
    out = subprocess.run([PY, "-c", "import config.gunicorn as g; print(g.timeout)"], cwd=ROOT, env=server_env(),
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip())


class Server:
    """The Procfile's `web` line (gunicorn -c python:config.gunicorn config.wsgi), one worker, on loopback."""

    def __init__(self):
        self.proc = subprocess.Popen([GUNICORN, "-c", "python:config.gunicorn", "config.wsgi", "-b",
                                      f"127.0.0.1:{PORT}", "--access-logfile", "/dev/null", "--no-control-socket"],
                                     cwd=ROOT, env=server_env(WEB_CONCURRENCY="1"))
        deadline = time.monotonic() + 30
        while True:
            try:
                urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2).read()
                break
            except OSError as exc:
                if getattr(exc, "code", None):  # an HTTP answer: the server is up
                    break
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.3)

    def worker(self) -> int:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        (pid,) = [int(p) for p in out.split()]
        return pid

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def fetch(path: str, query: dict, headers: dict, *, worker: int) -> dict:
    """One request read to the end: data rows, bytes, seconds, and the worker's peak RSS growth (MiB)."""
    url = f"http://127.0.0.1:{PORT}{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib(worker, "VmRSS")
    started = time.monotonic()
    lines = size = 0
    with urlopen(Request(url, headers=headers), timeout=600) as response:
        status = response.status
        while block := response.read(256 * 1024):
            lines += block.count(b"\n")
            size += len(block)
    seconds = time.monotonic() - started
    peak = _status_kib(worker, "VmHWM")
    rows = lines - 1 if query.get("format", "csv") == "csv" else lines
    return {"status": status, "rows": rows, "bytes": size, "seconds": seconds, "rss_growth": (peak - before) / 1024,
            "rss_before": before / 1024}


def create_key() -> str:
    out = subprocess.run([PY, "manage.py", "create_api_key", "--name", "bench-export", "--scopes", "finance"],
                         cwd=ROOT, env=server_env(), capture_output=True, text=True, check=True)
    return out.stdout.strip()


def command_run() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "transactions.csv"
        started = time.monotonic()
        subprocess.run([PY, "manage.py", "export_transactions", "--from", PERIOD["from"], "--to", PERIOD["to"],
                        "--output", str(target)], cwd=ROOT, env=server_env(), check=True, capture_output=True)
        seconds = time.monotonic() - started
        with target.open("rb") as handle:
            rows = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) - 1
    return {"rows": rows, "seconds": seconds}


def copy_alone() -> dict:
    started = time.monotonic()
    rows = 0
    with psycopg.connect(DB_URL) as conn, conn.cursor().copy(
            "COPY (SELECT * FROM billing_transaction WHERE occurred_at >= '2026-11-01' AND occurred_at < '2026-12-01'"
            " ORDER BY occurred_at, id) TO STDOUT WITH (FORMAT csv)") as copy:
        for _ in copy:
            rows += 1
    return {"rows": rows, "seconds": time.monotonic() - started}


def main() -> int:
    if not GUNICORN.exists():
        print("needs .venv (make install)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a wrapper's SIGTERM still stops our gunicorn
    began = time.monotonic()
    ensure_database()
    seed(ROWS)
    timeout = gunicorn_timeout()
    key = create_key()
    finance = {"Authorization": f"Api-Key {key}"}
    results = {}
    server = Server()
    try:
        worker = server.worker()
        # Warm-up: imports, connections, the first query plans (one day each).
        fetch("/api/finance/transactions", {"from": "2026-11-02", "to": "2026-11-02"}, finance, worker=worker)
        fetch("/bench/baseline-export", {"from": "2026-11-02", "to": "2026-11-02"}, {}, worker=worker)
        print("measuring: the API (CSV) ...", flush=True)
        results["api"] = fetch("/api/finance/transactions", PERIOD, finance, worker=worker)
        print("measuring: the API (JSON lines) ...", flush=True)
        results["jsonl"] = fetch("/api/finance/transactions", {**PERIOD, "format": "jsonl"}, finance, worker=worker)
        print("measuring: the baseline view ...", flush=True)
        results["baseline"] = fetch("/bench/baseline-export", PERIOD, {}, worker=worker)
    finally:
        server.stop()
    print("measuring: the command and COPY alone ...", flush=True)
    results["command"] = command_run()
    results["copy"] = copy_alone()

    print(f"\n{ROWS:,} ledger rows (November 2026); one sync gunicorn worker (config/gunicorn.py, timeout {timeout} s)"
          f"; run took {time.monotonic() - began:.0f} s\n")
    base = results["baseline"]["rows"] / results["baseline"]["seconds"]
    print(f"{'':44} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'x base':>7} {'MiB':>7} {'RSS MiB':>8} "
          f"{'peak +MiB':>10}")
    labels = {"baseline": "baseline: .iterator() + csv.writer, HTTP", "api": "GET /api/finance/transactions (CSV)",
              "jsonl": "GET /api/finance/transactions (JSON lines)", "command": "manage.py export_transactions (CSV)",
              "copy": "COPY … TO STDOUT alone (psycopg, no HTTP)"}
    for name in ("baseline", "api", "jsonl", "command", "copy"):
        r = results[name]
        rate = r["rows"] / r["seconds"]
        size = f"{r['bytes'] / MIB:7.0f}" if "bytes" in r else f"{'':7}"
        rss = f"{r['rss_before']:8.0f} {r['rss_growth']:10.1f}" if "rss_growth" in r else ""
        print(f"{labels[name]:44} {r['rows']:9,} {r['seconds']:8.1f} {rate:9,.0f} {rate / base:7.2f} {size} {rss}")
    api = results["api"]
    ratio = (api["rows"] / api["seconds"]) / base
    print(f"\ntargets: API ≥ 3x baseline over HTTP: {ratio:.1f}x {'ok' if ratio >= 3 else 'MISSED'};"
          f" peak RSS growth < 100 MiB: {api['rss_growth']:.1f} MiB {'ok' if api['rss_growth'] < 100 else 'MISSED'};"
          f" 1M request under the {timeout} s web timeout: {api['seconds']:.1f} s "
          f"{'ok' if api['seconds'] < timeout else 'MISSED'}")
    complete = all(results[n]["rows"] == ROWS for n in results)
    print(f"every run gave all {ROWS:,} rows: {'yes' if complete else 'NO'}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
