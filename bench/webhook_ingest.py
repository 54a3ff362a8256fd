"""Benchmark of webhook ingestion (POST /webhooks/<provider>) beside a bare baseline, and the end-to-end
rate from POST to the status change on the stream with one worker process.

    .venv/bin/python bench/webhook_ingest.py      # needs PostgreSQL and Redis; wrk is installed when absent

Builds a separate database (BENCH_DATABASE_URL, default .../billing_bench_hooks; dropped and created
each run) from the models. One gunicorn app (this module, sync workers) serves both endpoints, so the
baseline and the pipeline run with the same middleware and server settings in the same run:

- baseline: `POST /bench/baseline` verifies an HMAC-SHA256 of the body and INSERTs the body (autocommit),
  with the test adapter's bodies, and again with a store's own bodies when they are over 1.5x as large
  (Stripe's, Apple's), so a store is also compared with HMAC + INSERT of bodies of its size;
- the test adapter, `POST /webhooks/hooktest` (tests/webhooks/adapter.py: HMAC + JSON, bodies of ~650
  bytes): the floor of the answer path, the INSERT … ON CONFLICT of the event, and the enqueue (SET NX of
  the drain flag; a drain task is published only when none is scheduled). No worker runs during this phase;
- each store through its real adapter (bench/webhook_stores.py builds the bodies): Stripe events as the
  Stripe fake emits them, signed with the webhook secret (Stripe-Signature); App Store Server
  Notifications V2 whose JWS (and nested transaction and renewal JWS) are signed by a certificate chain
  generated for the run, its root the only one the app trusts (APPLE_ROOT_CERTIFICATES); Google Pub/Sub
  push envelopes of captured RTDNs with the OIDC bearer token Pub/Sub signs, the signing certificates
  served by the Google fake running as a server (GOOGLE_PUBSUB_CERTS_URL); Xsolla notifications with
  their `Authorization: Signature` header.

Every request carries a unique, pre-signed body (read by the wrk Lua script from a file; a run that
would wrap around and repeat bodies is reported), so no duplicate takes the fast path by accident.
Throughput at 32 connections, latency (p50/p99) at 8. CPU µs/request = utime+stime of the gunicorn
workers, the bench database's PostgreSQL backends and redis-server over the requests served.

End to end: one `celery worker -P solo` process, N new test-adapter events POSTed by wrk (8 connections),
timed from the first POST until N entries are on the (bench's own) stream.

    BENCH_STORES=hooktest,stripe   # only these rows (default: all); BENCH_PROFILE=1: see webhook_profile.py
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench/ is not a package root
from bench.harness import backend_pids, cpu_ticks, ensure_wrk, redis_pids, schema_database
from bench.wrk import command as wrk_command
from bench.wrk import post as wrk_post
from bench.wrk import result as wrk_result
from bench.wrk import write_bodies as wrk_bodies

ROOT = Path(__file__).resolve().parent.parent

PY = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
CELERY = ROOT / ".venv" / "bin" / "celery"
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/billing_bench_hooks")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
WORKERS = int(os.environ.get("BENCH_WORKERS", "3"))
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
E2E_EVENTS = int(os.environ.get("BENCH_E2E_EVENTS", "3000"))
PORT = int(os.environ.get("BENCH_PORT", "18091"))
FAKE_PORT = int(os.environ.get("BENCH_FAKE_PORT", str(PORT + 1)))
BODIES_PER_RUN = int(os.environ.get("BENCH_BODIES", "40000"))
# Real stores' bodies are larger and slower to sign: fewer per run (a run that repeats bodies says so).
STORE_BODIES_PER_RUN = int(os.environ.get("BENCH_STORE_BODIES", "15000"))
STORES = [s.strip() for s in os.environ.get("BENCH_STORES", "hooktest,stripe,apple,google,xsolla").split(",")
          if s.strip()]
STREAM = f"bench:events:{uuid.uuid4().hex[:8]}"
TICKS = os.sysconf("SC_CLK_TCK")
SIGNATURE_HEADER = "X-Hooktest-Signature"
TARGET_RATIO, TARGET_P99_MS, TARGET_E2E = 0.80, 25.0, 500
# A store whose events are this many times the baseline's body also gets a baseline of its own bodies.
SAME_SIZE_BASELINE_ABOVE = 1.5


# --- the served app (imported by gunicorn as bench.webhook_ingest:application) ----------------

def _build_application():
    import hashlib
    import hmac

    import django
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    settings.ROOT_URLCONF = __name__

    from django.db import connection
    from django.http import JsonResponse
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt

    from tests.webhooks.adapter import SECRET

    @csrf_exempt
    def baseline(request):
        body = request.body
        expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected):
            return JsonResponse({"error": "bad signature"}, status=400)
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO bench_raw_event (body) VALUES (%s)", [body])
        return JsonResponse({"status": "received"})

    global urlpatterns
    urlpatterns = [path("bench/baseline", baseline), path("", include("config.urls"))]

    from config.wsgi import application  # as the Procfile serves it (its fast paths included)

    return application


urlpatterns: list = []
if os.environ.get("BENCH_WEBHOOK_APP") == "1":
    application = _build_application()


# --- set-up -------------------------------------------------------------------------------------



def env(**extra) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_"))}
    base.update({"DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": REDIS_URL,
                 "SECRET_KEY": "bench-only", "DEBUG": "0", "LOG_LEVEL": "WARNING",
                 # the test suite's settings: the project's, plus the test adapter the bench posts to
                 "DJANGO_SETTINGS_MODULE": "tests.settings",
                 "ALLOWED_HOSTS": "127.0.0.1,localhost", "CELERY_TASK_ALWAYS_EAGER": "0",
                 "BILLING_EVENTS_STREAM": STREAM, "BENCH_WEBHOOK_APP": "1", "PYTHONPATH": str(ROOT)})
    base.update(_store_settings)
    base.update(extra)
    return base


_store_settings: dict = {}  # the real adapters' settings, set by main() once the fakes run


def create_database() -> None:
    import psycopg

    schema_database(DB_URL, env(BENCH_WEBHOOK_APP="0"), fresh=True)
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_raw_event (id bigserial PRIMARY KEY, body bytea NOT NULL,"
                     " received_at timestamptz NOT NULL DEFAULT now())")


def redis_client():
    import redis

    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


def reset_queue() -> None:
    import psycopg

    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("TRUNCATE webhooks_webhookevent, webhooks_webhookevent_subscriptions, bench_raw_event")
    redis_client().flushdb()


def hooktest_requests(run: str, count: int):
    """The test adapter's requests: (headers, body), every body unique (event id, subscription, user)."""
    import hashlib
    import hmac

    from tests.webhooks.adapter import SECRET

    padding = "x" * 420  # a body of ~650 bytes, like a store's event
    for i in range(count):
        body = json.dumps({"id": f"evt_{run}_{i}", "type": "status", "subscription_id": f"sub_{run}_{i}",
                           "user_id": f"u{i % 500}", "status": "ACTIVE", "time": "2026-11-01T10:00:00+00:00",
                           "data": {"note": padding}}, separators=(",", ":")).encode()
        yield {SIGNATURE_HEADER: hmac.new(SECRET, body, hashlib.sha256).hexdigest()}, body


def baseline_requests(requests):
    """A store's bodies as the baseline's requests (signed with the baseline's HMAC): the HMAC + INSERT of
    bodies of the store's size, the fair floor for a store whose events are several times the 592 bytes."""
    import hashlib
    import hmac

    from tests.webhooks.adapter import SECRET

    def resigned(run: str, count: int):
        for _headers, body in requests(run, count):
            yield {SIGNATURE_HEADER: hmac.new(SECRET, body, hashlib.sha256).hexdigest()}, body

    return resigned


def write_bodies(run: str, count: int, requests=hooktest_requests) -> str:
    return wrk_bodies(requests(run, count))


def mean_body_bytes(path: str) -> float:
    sizes = [len(line) - line.index(b"\t") - 2 for line in Path(path).read_bytes().splitlines(keepends=True)]
    return sum(sizes) / max(len(sizes), 1)


def wrk(path: str, bodies: str, connections: int, *, seconds: int = DURATION, stop: bool = False) -> dict:
    return wrk_post(f"http://127.0.0.1:{PORT}", path, bodies, connections, seconds, stop=stop)


# --- processes and CPU --------------------------------------------------------------------------

class Server:
    def __init__(self):
        self.proc = subprocess.Popen(
            [GUNICORN, "bench.webhook_ingest:application", "-w", str(WORKERS), "-k", "sync", "-b",
             f"127.0.0.1:{PORT}", "--log-level", "warning", "--timeout", "60"], cwd=ROOT, env=env())
        deadline = time.monotonic() + 30
        while True:
            try:
                urlopen(f"http://127.0.0.1:{PORT}/webhooks/hooktest", timeout=2).read()
            except OSError as exc:
                if getattr(exc, "code", None) == 405:
                    break
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.3)

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)








def measure(label: str, path: str, server: Server, requests=hooktest_requests, count: int = BODIES_PER_RUN) -> dict:
    run = uuid.uuid4().hex[:8]
    warm = write_bodies(f"w{run}", 300, requests)
    throughput_bodies = write_bodies(f"t{run}", count, requests)
    latency_bodies = write_bodies(f"l{run}", count, requests)
    size = mean_body_bytes(throughput_bodies)
    try:
        wrk(path, warm, 8, seconds=2, stop=True)  # connections, imports
        pids, backends, redis = server.workers(), backend_pids(DB_URL), redis_pids()
        before = cpu_ticks(pids), cpu_ticks(backends), cpu_ticks(redis)
        throughput = wrk(path, throughput_bodies, 32)
        after = cpu_ticks(pids), cpu_ticks(backends), cpu_ticks(redis)
        latency = wrk(path, latency_bodies, 8)
    finally:
        for name in (warm, throughput_bodies, latency_bodies):
            os.unlink(name)
    cpu = [(a - b) / TICKS * 1e6 / max(throughput["requests"], 1) for a, b in zip(after, before, strict=True)]
    row = {"label": label, "bytes": size, "rps": throughput["rps"], "p50": latency["p50"], "p99": latency["p99"],
           "cpu_app": cpu[0], "cpu_db": cpu[1], "cpu_redis": cpu[2],
           "bad": throughput["non2xx"] + latency["non2xx"] + throughput["errors"] + latency["errors"],
           "wrapped": throughput["wrapped"] + latency["wrapped"]}
    print(f"  {label}: {row['rps']:,.0f} req/s, p50 {row['p50']:.2f} ms, p99 {row['p99']:.2f} ms", flush=True)
    return row


def _worker_start(log_name: str) -> subprocess.Popen:
    with open(log_name, "wb") as log:
        worker = subprocess.Popen([CELERY, "-A", "config", "worker", "-P", "solo", "-c", "1", "--without-gossip",
                                   "--without-mingle", "--without-heartbeat", "-l", "INFO"], cwd=ROOT,
                                  env=env(BENCH_WEBHOOK_APP="0"), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while b"ready." not in Path(log_name).read_bytes():
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError("the worker did not start: " + Path(log_name).read_text())
        time.sleep(0.2)
    return worker


def _post_all(bodies: str) -> dict:
    """POST every body (wrk, 8 connections); returns once all are stored."""
    import psycopg

    # wrk runs for a fixed time whatever its script says: stop it once every event is stored.
    cmd, script = wrk_command(f"http://127.0.0.1:{PORT}", "/webhooks/hooktest", bodies, 8, 300, stop=True)
    started = time.monotonic()
    posting = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM webhooks_webhookevent").fetchone()[0] < E2E_EVENTS:
            if time.monotonic() - started > 300 or posting.poll() is not None:
                raise RuntimeError("the events were not all stored")
            time.sleep(0.02)
    posted_in = time.monotonic() - started
    posting.send_signal(signal.SIGINT)
    ingest = wrk_result(posting.communicate(timeout=30)[0])
    os.unlink(script)
    return {"posted_in": posted_in, "non2xx": ingest["non2xx"], "cut_off": ingest["errors"]}


def _all_on_stream() -> None:
    client = redis_client()
    deadline = time.monotonic() + 300
    while client.xlen(STREAM) < E2E_EVENTS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {client.xlen(STREAM)} of {E2E_EVENTS} on the stream after 300 s")
        time.sleep(0.02)


def end_to_end(server: Server, *, drain_only: bool = False) -> dict:
    """One worker process; N new events POSTed; time until N status changes are on the stream. With
    `drain_only`, the N events are stored first and the worker started after: the time (and the worker's
    CPU) from its "ready." on is processing alone, not bounded by how fast the events arrive."""
    reset_queue()
    fd, log_name = tempfile.mkstemp(suffix=".log", prefix="webhook-worker-")
    os.close(fd)
    bodies = write_bodies(f"e{uuid.uuid4().hex[:8]}", E2E_EVENTS)
    worker = None
    try:
        if drain_only:
            posted = _post_all(bodies)
            worker = _worker_start(log_name)
            ticks, started = cpu_ticks([worker.pid]), time.monotonic()
        else:
            worker = _worker_start(log_name)
            ticks, started = cpu_ticks([worker.pid]), time.monotonic()
            posted = _post_all(bodies)
        _all_on_stream()
        total = time.monotonic() - started
        cpu = (cpu_ticks([worker.pid]) - ticks) / TICKS * 1e6 / E2E_EVENTS
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        os.unlink(bodies)
        os.unlink(log_name)
    return {"events": E2E_EVENTS, "seconds": total, "rate": E2E_EVENTS / total, "worker_cpu": cpu, **posted}


def main() -> int:
    if not GUNICORN.exists() or not ensure_wrk():
        print("needs .venv (make install) and wrk (apt-get install -y wrk failed)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    print("building the bench database ...", flush=True)
    create_database()
    reset_queue()
    os.environ.update(env(BENCH_WEBHOOK_APP="0"))  # the body builders import the project's code
    import django

    django.setup()
    from bench.webhook_stores import Stores

    stores = Stores(FAKE_PORT)
    _store_settings.update(stores.settings)
    rows, e2e, drained = [], None, None
    server = Server()
    try:
        baseline = measure("baseline: HMAC + INSERT body", "/bench/baseline", server)
        for store in STORES:
            if store == "hooktest":
                rows.append(measure("test adapter (floor)", "/webhooks/hooktest", server))
            else:
                row = measure(store, f"/webhooks/{store}", server, stores.requests(store), STORE_BODIES_PER_RUN)
                if row["bytes"] > SAME_SIZE_BASELINE_ABOVE * baseline["bytes"]:
                    row["base"] = measure(f"baseline, {store}'s bodies", "/bench/baseline", server,
                                          baseline_requests(stores.requests(store)), STORE_BODIES_PER_RUN)
                rows.append(row)
        if "hooktest" in STORES:
            e2e = end_to_end(server)
            drained = end_to_end(server, drain_only=True)
    finally:
        server.stop()
        stores.stop()

    print(f"\n{WORKERS} sync gunicorn workers, wrk {DURATION}s per figure, unique signed bodies; throughput at 32 "
          f"connections, latency at 8 (run took {time.monotonic() - began:.0f} s)\n")
    print(f"{'POST':30} {'body B':>7} {'req/s':>8} {'x base':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'CPU µs/req: app':>16} {'+pg':>6} {'+redis':>7} {'non-2xx':>8} {'repeats':>8}")
    for r in (baseline, *[x for row in rows for x in (row.get("base"), row) if x]):
        print(f"{r['label']:30} {r['bytes']:7,.0f} {r['rps']:8,.0f} {r['rps'] / baseline['rps']:7.2f} {r['p50']:7.2f} "
              f"{r['p99']:7.2f} {r['cpu_app']:16.0f} {r['cpu_db']:6.0f} {r['cpu_redis']:7.0f} {r['bad']:8d} "
              f"{r['wrapped']:8d}")
    if e2e:
        print(f"\nend to end, one worker process (-P solo), test adapter: {e2e['events']} events POSTed in "
              f"{e2e['posted_in']:.1f} s, all {e2e['events']} status changes on the stream after "
              f"{e2e['seconds']:.1f} s: "
              f"{e2e['rate']:.0f} events/s, worker CPU {e2e['worker_cpu']:,.0f} µs/event (non-2xx: {e2e['non2xx']}; "
              f"requests cut off when wrk was stopped: {e2e['cut_off']})")
        print(f"the worker alone (the {drained['events']} events stored first, then the worker started): "
              f"{drained['rate']:.0f} events/s from its start to the last status change on the stream, "
              f"worker CPU {drained['worker_cpu']:,.0f} µs/event")
    ratios = ", ".join(f"{_short(r)} {r['rps'] / baseline['rps']:.2f}" + (
        f" ({r['rps'] / r['base']['rps']:.2f} x HMAC + INSERT of its own bodies)" if r.get("base") else "")
        for r in rows)
    p99s = ", ".join(f"{_short(r)} {r['p99']:.1f}" for r in rows)
    e2e_rate = f"{e2e['rate']:.0f} (the worker alone: {drained['rate']:.0f})" if e2e else "not measured"
    print(f"\ntargets (issue 17): ingestion ≥ {TARGET_RATIO:.2f} x baseline: {ratios}; p99 < {TARGET_P99_MS:.0f} ms: "
          f"{p99s}; end to end ≥ {TARGET_E2E} events/s: {e2e_rate}")
    return 0


def _short(row: dict) -> str:
    return "hooktest" if row["label"].startswith("test adapter") else row["label"]


if __name__ == "__main__":
    sys.exit(main())
