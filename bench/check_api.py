"""Benchmark of GET /api/subscriptions/check/<user_id> beside a bare Django JSON view, under gunicorn (sync)
and granian (WSGI), each with the same worker settings, in one run.

    .venv/bin/python bench/check_api.py [--server gunicorn|granian|both] [--cpu-rounds N]   # PostgreSQL, Redis, wrk

Seeds a separate PostgreSQL database (BENCH_DATABASE_URL, default .../billing_bench; created, reused on
later runs) with 10k, then 1M subscribers with one subscription each, serves the app and the bare view
with each server, and measures with wrk: requests/s at 32 connections and p50/p99 latency at 8
connections. The servers (matched: BENCH_WORKERS processes, default 2, one request at a time each):
gunicorn `-k sync`; granian `--interface wsgi --blocking-threads 1 --runtime-threads 1 --http 1 --no-ws`
(the Procfile's `web`, config/web.py), serving the check through config/granian_wsgi.py's guard as `web` does.
Each row is measured under both servers back to back (a load change on the shared machine hits both),
and each server's rows are ratios to its own bare view. Callers are anonymous from 127.0.0.1 (a trusted
network), as an internal service calls it; one row adds an API key. User ids are drawn at random from a
hot set of 10k users spread over the whole table, each requested once first (which fills its cache
entry); one row runs with no Redis at all (every answer from PostgreSQL); one serves the bare view plus
one Redis GET (bench/bare_wsgi.py, BARE_REDIS_GET=1): the floor of a cached check. CPU µs/request =
utime+stime of the server's processes (master and workers), the bench database's PostgreSQL backends
and redis-server (shared with anything else running on the machine) over the requests served.
"""

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench/ is not a package root
import psycopg

from bench.harness import backend_pids, cpu_ticks, ensure_wrk, redis_pids, schema_database

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
GRANIAN = ROOT / ".venv" / "bin" / "granian"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/billing_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
PORT = int(os.environ.get("BENCH_PORT", "18090"))
HOT_SET = 10_000
TICKS = os.sysconf("SC_CLK_TCK")


# --- database -----------------------------------------------------------------------------------



def ensure_database() -> None:
    schema_database(DB_URL, server_env(), fresh=False, table="billing_subscription")


def seed(total: int) -> None:
    """Subscribers "1".."total", one subscription each (80% active, 20% expired), via COPY."""
    with psycopg.connect(DB_URL) as conn:
        have = conn.execute("SELECT count(*) FROM accounts_subscriber").fetchone()[0]
        if have >= total:
            return
        t0 = time.monotonic()
        product_id = conn.execute(
            "INSERT INTO billing_product (provider, store_product_id, label, period_unit, period_value, price_minor,"
            " currency, offered, created_at, updated_at) VALUES ('stripe', 'price_bench', 'Bench monthly', 'month', 1,"
            " 999, 'USD', true, now(), now())"
            " ON CONFLICT (provider, store_product_id) DO UPDATE SET label = excluded.label RETURNING id").fetchone()[0]
        ent_id = conn.execute(
            "INSERT INTO billing_entitlement (name, description) VALUES ('premium', '') ON CONFLICT (name)"
            " DO UPDATE SET description = excluded.description RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO billing_product_entitlements (product_id, entitlement_id) VALUES (%s, %s)"
                     " ON CONFLICT DO NOTHING", (product_id, ent_id))
        first = conn.execute("SELECT coalesce(max(id), 0) FROM accounts_subscriber").fetchone()[0] + 1
        with conn.cursor().copy("COPY accounts_subscriber (id, external_id, email, created_at, updated_at)"
                                " FROM STDIN") as copy:
            for i in range(have + 1, total + 1):
                copy.write_row((first + i - have - 1, str(i), "", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"))
        columns = ("provider, provider_subscription_id, subscriber_id, product_id, store_product_id, status,"
                   " period_unit, period_value, amount_minor, currency, auto_renew, started_at, expires_at,"
                   " environment, created_at, updated_at, raw_snapshot, last_verified_at")
        with conn.cursor().copy(f"COPY billing_subscription ({columns}) FROM STDIN") as copy:
            for i in range(have + 1, total + 1):
                active = i % 5 != 0
                copy.write_row(("stripe", f"sub_bench_{i}", first + i - have - 1, product_id, "price_bench",
                                "ACTIVE" if active else "EXPIRED", "month", 1, 999, "USD", active,
                                "2025-01-01T00:00:00Z", "2030-01-01T00:00:00Z" if active else "2025-02-01T00:00:00Z",
                                "production", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "{}",
                                "2025-06-01T00:00:00Z"))
        conn.execute("SELECT setval(pg_get_serial_sequence('accounts_subscriber', 'id'),"
                     " (SELECT max(id) FROM accounts_subscriber))")
        conn.commit()
        conn.execute("ANALYZE accounts_subscriber")
        conn.execute("ANALYZE billing_subscription")
        conn.commit()
        print(f"seeded {total - have:,} subscribers + subscriptions in {time.monotonic() - t0:.0f} s", flush=True)


# --- servers ------------------------------------------------------------------------------------

def server_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env.update({"DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench-only", "DEBUG": "0",
                "BILLING_TESTING": "0", "LOG_LEVEL": "WARNING", "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "CELERY_TASK_ALWAYS_EAGER": "1",
                # The anonymous callers come from loopback: a named trusted network (none is, by default).
                "CHECK_API_TRUSTED_NETWORKS": "127.0.0.0/8"})
    env.update(extra)
    return env


def server_command(server: str, app: str) -> list:
    """The same shape for both: WORKERS processes, each serving one request at a time (a sync worker;
    granian's one blocking thread runs the WSGI app, its Rust runtime one thread doing the HTTP)."""
    if server == "gunicorn":
        return [GUNICORN, app, "-w", str(WORKERS), "-k", "sync", "-b", f"127.0.0.1:{PORT}", "--log-level", "warning",
                "--timeout", "60"]
    if app == "config.wsgi:application":  # granian serves the app through its guard, as `web` does (config/web.py)
        app = "config.granian_wsgi:application"
    return [GRANIAN, app, "--interface", "wsgi", "--workers", str(WORKERS), "--blocking-threads", "1",
            "--runtime-threads", "1", "--http", "1", "--no-ws", "--host", "127.0.0.1", "--port", str(PORT),
            "--log-level", "warning"]


class Server:
    def __init__(self, server: str, app: str, **env):
        self.proc = subprocess.Popen(server_command(server, app), cwd=ROOT, env=server_env(**env))
        deadline = time.monotonic() + 30
        while True:
            try:
                urlopen(f"http://127.0.0.1:{PORT}/api/subscriptions/check/1", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{server} {app} did not start") from None
                time.sleep(0.3)

    def processes(self) -> list[int]:
        """The server's process tree: its master (gunicorn's arbiter, granian's supervisor) and workers."""
        found, queue = [], [self.proc.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
            queue.extend(int(p) for p in out.split())
        return found

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- measuring ----------------------------------------------------------------------------------







def lua_script(ids: list[str], api_key: str | None) -> str:
    header = f'wrk.headers["Authorization"] = "Api-Key {api_key}"\n' if api_key else ""
    return (header + "local ids = {" + ",".join(f'"{i}"' for i in ids) + "}\n"
            "request = function()\n"
            "  return wrk.format('GET', '/api/subscriptions/check/' .. ids[math.random(#ids)])\n"
            "end\n")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(script: str, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{DURATION}s", "--latency", "-s",
                              f.name, f"http://127.0.0.1:{PORT}"], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "requests": int(re.search(r"(\d+) requests in", out).group(1)),
              "errors": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0}
    for pct in ("50", "99"):
        result[f"p{pct}"] = _ms(re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M).group(1))
    return result


def measure(server_name: str, label: str, app: str, ids: list[str], *, api_key: str | None = None,
            warm_all: bool = True, **env) -> dict:
    server = Server(server_name, app, **env)
    try:
        script = lua_script(ids, api_key)
        # Every id once (fills the cache through the app's read path), or a few (connections, imports).
        warm(ids if warm_all else ids[:200], api_key)
        pids = server.processes()
        backends, redis = backend_pids(DB_URL), redis_pids()
        before = cpu_ticks(pids), cpu_ticks(backends), cpu_ticks(redis)
        throughput = wrk(script, 32)
        after = cpu_ticks(pids), cpu_ticks(backends), cpu_ticks(redis)
        latency = wrk(script, 8)
    finally:
        server.stop()
    cpu = [(a - b) / TICKS * 1e6 / max(throughput["requests"], 1) for a, b in zip(after, before, strict=True)]
    row = {"server": server_name, "label": label, "rps": throughput["rps"], "p50": latency["p50"],
           "p99": latency["p99"], "cpu_app": cpu[0], "cpu_db": cpu[1], "cpu_redis": cpu[2],
           "errors": throughput["errors"] + latency["errors"]}
    print(f"  {server_name:8} {label}: {row['rps']:,.0f} req/s, p50 {row['p50']:.2f} ms, p99 {row['p99']:.2f} ms",
          flush=True)
    return row


def warm(ids: list[str], api_key: str | None) -> None:
    """Requests every id once (fills the cache through the app's own read path, opens connections)."""
    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else {}

    def get(uid: str) -> None:
        request = Request(f"http://127.0.0.1:{PORT}/api/subscriptions/check/{uid}", headers=headers)
        urlopen(request, timeout=30).read()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(get, ids))


def create_key() -> str:
    out = subprocess.run([PY, "manage.py", "create_api_key", "--name", "bench", "--scopes", "check"], cwd=ROOT,
                         env=server_env(), capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cpu(row: dict) -> float:
    return row["cpu_app"] + row["cpu_db"] + row["cpu_redis"]


def cpu_rounds(servers, ids: list[str], rounds: int) -> int:
    """CPU per request of the bare view, the bare view + one Redis GET and the cached check, measured
    one after the other `rounds` times (a load change on a shared machine hits all three alike)."""
    apps = (("bare view", "bench.bare_wsgi:application", {}),
            ("bare view + one Redis GET", "bench.bare_wsgi:application", {"BARE_REDIS_GET": "1"}),
            ("cached check", "config.wsgi:application", {}))
    cpus: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for server in servers:
            for label, app, env in apps:
                row = measure(server, label, app, ids, warm_all=label == "cached check", **env)
                cpus.setdefault((server, label), []).append(row["cpu_app"] + row["cpu_redis"])
    print(f"\nmedians of {rounds} interleaved rounds, wrk {DURATION}s each; CPU µs per request, server + "
          f"redis-server\n")
    print(f"{'':10} {'bare view':>10} {'+ one GET':>10} {'check':>10} {'check/bare':>11}")
    for server in servers:
        bare, floor, check = (statistics.median(cpus[(server, label)]) for label, _app, _env in apps)
        print(f"{server:10} {bare:10.0f} {floor:10.0f} {check:10.0f} {check / bare:11.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("gunicorn", "granian", "both"), default="both")
    parser.add_argument("--cpu-rounds", type=int, default=0, metavar="N",
                        help="instead of the table: N rounds of the bare view, the bare view + one Redis GET and "
                             "the cached check, interleaved, per server; medians of CPU per request")
    args = parser.parse_args()
    servers = ("gunicorn", "granian") if args.server == "both" else (args.server,)
    if (any(not (GUNICORN if s == "gunicorn" else GRANIAN).exists() for s in servers)
            or not ensure_wrk()):
        print("needs .venv (make install) and wrk (apt-get install -y wrk failed)", file=sys.stderr)
        return 2
    # A SIGTERM (timeout, Ctrl-C from a wrapper) still stops the server we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    rng = random.Random(42)
    ensure_database()
    rows: dict[str, list[dict]] = {s: [] for s in servers}

    def each(label: str, app: str, ids: list[str], **kwargs) -> None:
        for server in servers:  # back to back: a load change during the run hits both servers' rows
            rows[server].append(measure(server, label, app, ids, **kwargs))

    ids_10k = [str(i) for i in range(1, 10_001)]
    if args.cpu_rounds:
        seed(10_000)
        return cpu_rounds(servers, ids_10k, args.cpu_rounds)
    each("bare Django JSON view", "bench.bare_wsgi:application", ids_10k)
    seed(10_000)
    # The floor of a cached check: the bare view plus the one Redis round trip it cannot avoid.
    each("bare view + one Redis GET", "bench.bare_wsgi:application", ids_10k, BARE_REDIS_GET="1")
    each("check API, 10k subscriptions", "config.wsgi:application", ids_10k)
    seed(1_000_000)
    hot = [str(rng.randint(1, 1_000_000)) for _ in range(HOT_SET)]
    each("check API, 1M subscriptions", "config.wsgi:application", hot)
    each("check API, 1M, with Api-Key", "config.wsgi:application", hot, api_key=create_key(), warm_all=False)
    everyone = [str(rng.randint(1, 1_000_000)) for _ in range(HOT_SET)]
    each("check API, 1M, no Redis (DB only)", "config.wsgi:application", everyone, REDIS_URL="", warm_all=False)

    print(f"\n{WORKERS} worker processes per server, one request at a time each (gunicorn -k sync; granian "
          f"--interface wsgi --blocking-threads 1 --runtime-threads 1); wrk {DURATION}s per figure; throughput "
          f"at 32 connections, latency at 8 (run took {time.monotonic() - started:.0f} s)\n")
    print(f"{'':36} {'server':9} {'req/s':>8} {'x bare':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req: app':>16} "
          f"{'+pg':>6} {'+redis':>7} {'errors':>7}")
    for i in range(len(rows[servers[0]])):
        for server in servers:
            r, bare = rows[server][i], rows[server][0]
            print(f"{r['label'] if server == servers[0] else '':36} {server:9} {r['rps']:8,.0f} "
                  f"{r['rps'] / bare['rps']:7.2f} {r['p50']:7.2f} {r['p99']:7.2f} {r['cpu_app']:16.0f} "
                  f"{r['cpu_db']:6.0f} {r['cpu_redis']:7.0f} {r['errors']:7d}")

    # issue 17's targets (docs/performance.md "Check API"): ratios to the bare view in this same run.
    print()
    for server in servers:
        bare, floor, ten_k, one_m, _key, no_redis = rows[server]
        print(f"targets, {server}: cached check >= 0.85 x bare: {ten_k['rps'] / bare['rps']:.2f} (10k), "
              f"{one_m['rps'] / bare['rps']:.2f} (1M); CPU per request <= 1.15 x bare: "
              f"{cpu(ten_k) / cpu(bare):.2f} (10k), {cpu(one_m) / cpu(bare):.2f} (1M);"
              f" p99 < 10 ms at 8 connections: {max(ten_k['p99'], one_m['p99']):.1f} ms;"
              f" no Redis >= 0.40 x bare: {no_redis['rps'] / bare['rps']:.2f}; the floor (bare + one GET):"
              f" {floor['rps'] / bare['rps']:.2f} x, CPU {cpu(floor) / cpu(bare):.2f} x")
    if len(servers) == 2:
        # The Procfile rule (issue 17): granian only if it serves more checks per CPU second, p99 met.
        def per_cpu_second(server: str, index: int) -> float:
            return 1e6 / cpu(rows[server][index])

        print("granian vs gunicorn, checks per CPU second (server + PostgreSQL + Redis): " + ", ".join(
            f"{rows['gunicorn'][i]['label'].removeprefix('check API, ')} "
            f"{per_cpu_second('granian', i):,.0f} vs {per_cpu_second('gunicorn', i):,.0f}"
            f" = {per_cpu_second('granian', i) / per_cpu_second('gunicorn', i):.2f}x" for i in (2, 3, 4, 5))
            + f"; p99 at 8 connections, granian {max(r['p99'] for r in rows['granian'][2:5]):.1f} ms, "
              f"gunicorn {max(r['p99'] for r in rows['gunicorn'][2:5]):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
