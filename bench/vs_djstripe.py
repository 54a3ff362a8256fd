"""Benchmark beside a peer: the same signed Stripe events sent to our `POST /webhooks/stripe` and to
dj-stripe's own webhook view (`djstripe.urls`, with a dj-stripe `WebhookEndpoint` whose secret signs them).

    .venv/bin/python bench/vs_djstripe.py      # needs PostgreSQL, Redis and wrk (apt-get install -y wrk)

What each side does per event, in the request:
- ours: verify the signature, store the event (INSERT … ON CONFLICT), queue its drain; processing (re-read
  of the subscription from Stripe, the state applied) is a worker's, later;
- dj-stripe: verify the signature, store a WebhookEventTrigger, then process the event in the request:
  re-fetch the event's object (and what it refers to) from the Stripe API, write its tables.

The Stripe API fake (tests/fakes/stripe.py) is served on BENCH_FAKE_PORT (the acknowledgement runs' events)
and the port after it (the end-to-end run's); both the app and dj-stripe (the stripe library's module-level
api_base, set by our `client.configure_library()`) call it. Its events are those of new subscriptions,
each created and renewed (bench/stripe_events.py: 0.85 to 4 KB each); in the end-to-end set, of each ten
subscriptions one stays trialing, one goes past due, one is set to cancel and one is canceled, so that the
states compared are not all `active`.

Two databases built from the models: ours (BENCH_DATABASE_URL, default .../billing_bench_vsdj) and
dj-stripe's (BENCH_PEER_DATABASE_URL, default .../billing_bench_vsdj_djstripe); both dropped and made anew
each run. One app (bench/settings_peer.py: the project's settings and URLs plus `djstripe.urls`) served
by gunicorn (BENCH_WORKERS sync workers) on BENCH_PORT, once per side, one side at a time.

Measured:
- acknowledgement: req/s with wrk at 32 connections, p50/p99 at 8, every request a unique pre-signed event
  read from a file (bench/wrk.py); CPU µs per request = utime+stime of the gunicorn workers, that side's
  database's PostgreSQL backends and redis-server (the whole server's: on a shared machine others' load
  shows there) over the throughput run; the Stripe API fake's CPU (Stripe's side) is not counted. No worker
  runs for ours: we acknowledge and queue.
- end to end: the same BENCH_SUBSCRIPTIONS subscriptions' events to each side, 8 connections, in Stripe's
  order; those answered with an error are sent again afterwards (Stripe retries) and counted. Ours: the
  time to POST them all plus the time one `celery worker -P solo` on the Procfile's queues takes to drain
  them (started once they are stored; its start-up not counted). dj-stripe: the time to POST them all.
- the same states: for each subscription, our Subscription.status against dj-stripe's stored Stripe
  status mapped through our own table (billing.providers.stripe.mapping.unified_status, which also reads
  cancel_at_period_end/cancel_at), and the Stripe status our applied snapshot recorded against the one
  dj-stripe stored. Exits 1 on any mismatch.
"""

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: bench/ is not a package root

from bench import wrk  # noqa: E402
from bench.harness import backend_pids, cpu_ticks, ensure_wrk, redis_pids, schema_database  # noqa: E402
from bench.stripe_events import (  # noqa: E402
    PROCFILE_QUEUES,
    WEBHOOK_SECRET,
    make_events,
    pending,
    process_env,
    start_worker,
    wait_ready,
)

GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
PG = "postgres://postgres:postgres@127.0.0.1:5432/"
DB_URL = os.environ.get("BENCH_DATABASE_URL", PG + "billing_bench_vsdj")
PEER_DB_URL = os.environ.get("BENCH_PEER_DATABASE_URL", PG + "billing_bench_vsdj_djstripe")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PORT = int(os.environ.get("BENCH_PORT", "19200"))
FAKE_PORT = int(os.environ.get("BENCH_FAKE_PORT", "19201"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "3"))
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
SUBSCRIPTIONS = int(os.environ.get("BENCH_SUBSCRIPTIONS", "300"))  # end to end: ~7 events each
BODIES = int(os.environ.get("BENCH_BODIES", "6000"))  # unique events per acknowledgement run
TIMEOUT = int(os.environ.get("BENCH_TIMEOUT", "600"))
CONNECTIONS = 8
TICKS = os.sysconf("SC_CLK_TCK")
ENDPOINT_UUID = uuid.UUID("00000000-0000-4000-8000-00000000d15e")
OURS, PEER = "ours: POST /webhooks/stripe", "dj-stripe: its webhook view"


def env(db_url: str, fake_url: str, **extra) -> dict:
    return process_env(db_url=db_url, redis_url=REDIS_URL, fake_url=fake_url, settings_module="bench.settings_peer",
                       allowed_hosts="127.0.0.1,localhost", stream="bench:vsdj", drop=("DJSTRIPE_",), **extra)


# --- set-up -------------------------------------------------------------------------------------

def create_databases(fake_url: str) -> None:
    schema_database(DB_URL, env(DB_URL, fake_url), fresh=True)
    schema_database(PEER_DB_URL, env(PEER_DB_URL, fake_url), fresh=True)
    os.environ.update(env(DB_URL, fake_url, BENCH_PEER_DATABASE_URL=PEER_DB_URL))
    import django

    django.setup()
    from djstripe.models import WebhookEndpoint

    from tests.fakes.stripe import API_VERSION

    # The endpoint row as dj-stripe keeps it, made here without asking Stripe: its secret signs
    # the events; dj-stripe's default validation (verify_signature) checks them with it.
    WebhookEndpoint.objects.using("peer").create(
        id="we_bench_vsdj", livemode=False, api_version=API_VERSION, enabled_events=["*"], secret=WEBHOOK_SECRET,
        status="enabled", url=f"http://127.0.0.1:{PORT}{peer_path()}", djstripe_uuid=ENDPOINT_UUID)


def peer_path() -> str:
    from django.urls import reverse

    return reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": ENDPOINT_UUID})


def reset_ours() -> None:
    """The acknowledgement runs' events out of the way (stored, never processed: no worker ran)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE webhooks_webhookevent, webhooks_webhookevent_subscriptions CASCADE")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def signed(events: list[dict]) -> list[tuple[dict, str]]:
    """({Stripe-Signature}, body) per event, signed now: both sides refuse signatures older than 5 minutes,
    and the acknowledgement runs of both take less."""
    from tests.fakes.stripe import sign

    bodies = [json.dumps(e) for e in events]
    return [({"Stripe-Signature": sign(b.encode(), WEBHOOK_SECRET)}, b) for b in bodies]


class Server:
    def __init__(self, db_url: str, fake_url: str):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", PORT)) == 0:  # someone else's server would be measured
                raise RuntimeError(f"port {PORT} is in use: set BENCH_PORT")
        self.proc = subprocess.Popen(
            [GUNICORN, "config.wsgi", "-w", str(WORKERS), "-k", "sync", "-b", f"127.0.0.1:{PORT}",
             "--log-level", "warning", "--timeout", "60"], cwd=ROOT, env=env(db_url, fake_url))
        deadline = time.monotonic() + 120  # a loaded machine: the app's imports take a while
        while True:
            try:
                urlopen(f"http://127.0.0.1:{PORT}/webhooks/stripe", timeout=2).read()
            except OSError as exc:
                if getattr(exc, "code", None) == 405:
                    break
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()  # never left behind holding the port
                    raise RuntimeError(f"the server did not start on port {PORT} (in use?)") from None
                time.sleep(0.3)

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=40)


@contextmanager
def serving(db_url: str, fake_url: str):
    server = Server(db_url, fake_url)
    try:
        yield server
    finally:
        server.stop()


# --- acknowledgement ------------------------------------------------------------------------------

def acknowledge(label: str, server: Server, path: str, db_url: str, pools: dict) -> dict:
    url = f"http://127.0.0.1:{PORT}"
    files = {name: wrk.write_bodies(signed(events)) for name, events in pools.items()}
    try:
        wrk.post(url, path, files["warm"], CONNECTIONS, 2)  # connections, imports, caches
        pids, backends, redis = server.workers(), backend_pids(db_url), redis_pids()
        before = cpu_ticks(pids), cpu_ticks(backends), cpu_ticks(redis)
        throughput = wrk.post(url, path, files["throughput"], 32, DURATION)
        after = cpu_ticks(pids), cpu_ticks(backends), cpu_ticks(redis)
        latency = wrk.post(url, path, files["latency"], CONNECTIONS, DURATION)
    finally:
        for name in files.values():
            os.unlink(name)
    cpu = [(a - b) / TICKS * 1e6 / max(throughput["requests"], 1) for a, b in zip(after, before, strict=True)]
    row = {"label": label, "rps": throughput["rps"], "p50": latency["p50"], "p99": latency["p99"],
           "cpu_app": cpu[0], "cpu_db": cpu[1], "cpu_redis": cpu[2], "cpu": sum(cpu),
           "bad": throughput["non2xx"] + latency["non2xx"] + throughput["errors"] + latency["errors"],
           "wrapped": throughput["wrapped"] + latency["wrapped"]}
    print(f"  {label}: {row['rps']:,.1f} req/s, p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, "
          f"CPU {row['cpu']:,.0f} µs/request, non-2xx {row['bad']}", flush=True)
    return row


# --- end to end ------------------------------------------------------------------------------------

def _send(path: str, work: queue.Queue, failed: queue.Queue) -> None:
    """One keep-alive connection POSTing events off `work` until it is empty, each signed as it is sent
    (as Stripe signs each delivery: a run longer than the 5 minutes' tolerance still verifies); refused
    ones to `failed`."""
    from tests.fakes.stripe import sign

    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    while True:
        try:
            body = work.get_nowait()
        except queue.Empty:
            conn.close()
            return
        conn.request("POST", path, body=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET),
                                                       "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            failed.put(body)


def post_all(path: str, events: list[dict]) -> tuple[float, int]:
    """POST every event over CONNECTIONS keep-alive connections, taken in order; those answered with an
    error are sent again once all are done (up to 5 rounds), as Stripe redelivers. Returns (seconds, retried)."""
    started, retried, todo = time.monotonic(), 0, [json.dumps(e).encode() for e in events]
    for _ in range(5):
        work, failed = queue.Queue(), queue.Queue()
        for line in todo:
            work.put(line)
        threads = [threading.Thread(target=_send, args=(path, work, failed)) for _ in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        todo = list(failed.queue)
        if not todo:
            return time.monotonic() - started, retried
        retried += len(todo)
    raise RuntimeError(f"{len(todo)} events still refused after 5 rounds")


def end_to_end_ours(events: list[dict], fake) -> dict:
    reset_ours()
    calls = len(fake.requests)
    posted_in, retried = post_all("/webhooks/stripe", events)
    fd, log_name = tempfile.mkstemp(suffix=".log", prefix="vsdj-worker-")
    os.close(fd)
    worker = start_worker(env(DB_URL, fake.url, DJANGO_SETTINGS_MODULE="config.settings"), PROCFILE_QUEUES, log_name)
    try:
        wait_ready(worker, log_name)
        started, ticks = time.monotonic(), cpu_ticks([worker.pid])
        while pending():
            if time.monotonic() - started > TIMEOUT:
                raise RuntimeError(f"{pending()} events still pending after {TIMEOUT} s; the worker's log ends: "
                                   + Path(log_name).read_text()[-3000:])
            time.sleep(0.02)
        drained_in = time.monotonic() - started
        cpu = (cpu_ticks([worker.pid]) - ticks) / TICKS
    finally:
        worker.terminate()
        worker.wait(30)
        os.unlink(log_name)
    seconds = posted_in + drained_in
    row = {"seconds": seconds, "rate": len(events) / seconds, "posted_in": posted_in, "drained_in": drained_in,
           "retried": retried, "worker_cpu_us": cpu / len(events) * 1e6,
           "calls": (len(fake.requests) - calls) / len(events)}
    print(f"  ours: {len(events)} events POSTed in {posted_in:.1f} s, drained by one worker in {drained_in:.1f} s: "
          f"{row['rate']:.1f} events/s (worker CPU {row['worker_cpu_us']:,.0f} µs/event; Stripe API calls "
          f"{row['calls']:.2f}/event; sent again: {retried})", flush=True)
    return row


def end_to_end_peer(events: list[dict], fake) -> dict:
    calls = len(fake.requests)
    seconds, retried = post_all(peer_path(), events)
    row = {"seconds": seconds, "rate": len(events) / seconds, "retried": retried,
           "calls": (len(fake.requests) - calls) / len(events)}
    print(f"  dj-stripe: {len(events)} events POSTed and processed in {seconds:.1f} s: {row['rate']:.1f} events/s "
          f"(Stripe API calls {row['calls']:.2f}/event; sent again: {retried})", flush=True)
    return row


# --- the same states ---------------------------------------------------------------------------------

def compare_states(fake, events: list[dict]) -> dict:
    """Ours against dj-stripe's, per subscription of the end-to-end events; Stripe's own (the fake's)
    final status is shown beside them."""
    from djstripe.models import Subscription as PeerSubscription

    from billing.models import Subscription
    from billing.providers.stripe.mapping import unified_status
    from billing.snapshots import Provider

    ids = sorted({e["data"]["object"]["id"] for e in events if e["type"].startswith("customer.subscription.")})
    ours = {row[0]: row[1:] for row in Subscription.objects.filter(
        provider=Provider.STRIPE, provider_subscription_id__in=ids).values_list(
        "provider_subscription_id", "status", "raw_snapshot__subscription__status")}
    peer = {row[0]: row[1:] for row in PeerSubscription.objects.using("peer").filter(id__in=ids).values_list(
        "id", "stripe_data__status", "stripe_data__cancel_at_period_end", "stripe_data__cancel_at")}
    mismatches, tally, off_stripe = [], {}, {"ours": 0, "dj-stripe": 0}
    for sub_id in ids:
        truth = fake.objects[sub_id]
        key = (truth["status"], bool(truth.get("cancel_at_period_end")))
        tally[key] = tally.get(key, 0) + 1
        off_stripe["ours"] += ours.get(sub_id, (None, None))[1] != truth["status"]
        off_stripe["dj-stripe"] += peer.get(sub_id, (None,))[0] != truth["status"]
        if sub_id not in ours or sub_id not in peer:
            mismatches.append((sub_id, "missing: " + ", ".join(
                side for side, rows in (("ours", ours), ("dj-stripe", peer)) if sub_id not in rows)))
            continue
        our_status, our_stripe_status = ours[sub_id]
        peer_status, cancel_at_period_end, cancel_at = peer[sub_id]
        peer_unified = unified_status({"status": peer_status, "cancel_at_period_end": cancel_at_period_end,
                                       "cancel_at": cancel_at})
        if our_status != peer_unified or our_stripe_status != peer_status:
            mismatches.append((sub_id, f"ours {our_status} (Stripe status {our_stripe_status}), dj-stripe "
                                       f"{peer_status} → {peer_unified}; Stripe: {truth['status']}"))
    print(f"  {len(ids)} subscriptions; Stripe's final states (status, cancel_at_period_end): "
          + ", ".join(f"{s}{' +cancel' if c else ''} {n}" for (s, c), n in sorted(tally.items()))
          + f"; Stripe status held other than Stripe's own: ours {off_stripe['ours']}, "
            f"dj-stripe {off_stripe['dj-stripe']}", flush=True)
    for sub_id, why in mismatches[:20]:
        print(f"  MISMATCH {sub_id}: {why}")
    return {"subscriptions": len(ids), "mismatches": len(mismatches)}


# --- the run ---------------------------------------------------------------------------------------

def main() -> int:
    if not GUNICORN.exists() or not ensure_wrk():
        print("needs .venv (make install) and wrk (apt-get install -y wrk failed)", file=sys.stderr)
        return 2
    from tests.fakes.stripe import FakeStripe

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # servers and workers are stopped on the way out
    began = time.monotonic()
    # Two Stripe API fakes: the acknowledgement runs' thousands of subscriptions in one, the end-to-end
    # run's in the other, so that the fake's answers to the end-to-end re-reads do not depend on BENCH_BODIES
    # (its lists are scans of everything it holds).
    ack_fake, fake = FakeStripe().start(FAKE_PORT), FakeStripe().start(FAKE_PORT + 1)
    try:
        print(f"the Stripe API fakes at {ack_fake.url} and {fake.url}; building the bench databases ...", flush=True)
        create_databases(fake.url)
        print("the Stripe events ...", flush=True)
        per_sub = 7  # customer.created, subscription created/updated, two invoice events per invoice
        pools = {name: make_events(ack_fake, f"{name[:1]}{int(time.time()) % 100000}", count // per_sub + 1)
                 for name, count in (("warm", 200), ("throughput", BODIES), ("latency", BODIES))}
        e2e = make_events(fake, f"e{int(time.time()) % 100000}", SUBSCRIPTIONS, outcomes=True)
        sizes = [len(json.dumps(e)) for e in e2e]

        print("acknowledgement (no worker running for ours) ...", flush=True)
        with serving(DB_URL, ack_fake.url) as server:
            ours = acknowledge(OURS, server, "/webhooks/stripe", DB_URL, pools)
        with serving(PEER_DB_URL, ack_fake.url) as server:
            peer = acknowledge(PEER, server, peer_path(), PEER_DB_URL, pools)
        print("end to end ...", flush=True)
        with serving(DB_URL, fake.url):
            ours_e2e = end_to_end_ours(e2e, fake)
        with serving(PEER_DB_URL, fake.url):
            peer_e2e = end_to_end_peer(e2e, fake)
        print("the same states ...", flush=True)
        states = compare_states(fake, e2e)
    finally:
        ack_fake.stop()
        fake.stop()

    print(f"\n{WORKERS} sync gunicorn workers per side, one side at a time; wrk {DURATION}s per figure, unique "
          f"signed Stripe events of {min(sizes):,} to {max(sizes):,} bytes (mean {sum(sizes) // len(sizes):,}); "
          f"throughput at 32 connections, latency at {CONNECTIONS}; end to end {len(e2e)} events of "
          f"{SUBSCRIPTIONS} subscriptions at {CONNECTIONS} connections (run took {time.monotonic() - began:.0f} s)\n")
    print(f"{'':30} {'ack req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req: app':>16} {'+pg':>6} {'+redis':>7} "
          f"{'= total':>8} {'non-2xx':>8} {'repeats':>8} {'e2e events/s':>13}")
    for r, e in ((ours, ours_e2e), (peer, peer_e2e)):
        print(f"{r['label']:30} {r['rps']:10,.1f} {r['p50']:7.1f} {r['p99']:7.1f} {r['cpu_app']:16,.0f} "
              f"{r['cpu_db']:6,.0f} {r['cpu_redis']:7,.0f} {r['cpu']:8,.0f} {r['bad']:8d} {r['wrapped']:8d} "
              f"{e['rate']:13.1f}")
    print(f"(ours end to end: POST {ours_e2e['posted_in']:.1f} s + one worker's drain {ours_e2e['drained_in']:.1f} s, "
          f"worker CPU {ours_e2e['worker_cpu_us']:,.0f} µs/event; dj-stripe processes in the request; Stripe API "
          f"calls per event: ours {ours_e2e['calls']:.2f}, dj-stripe {peer_e2e['calls']:.2f}; "
          f"events sent again after an error: ours {ours_e2e['retried']}, dj-stripe {peer_e2e['retried']})")
    print(f"same states: {states['subscriptions']} subscriptions, {states['mismatches']} mismatches")
    print(f"\ntargets: acknowledgement ≥ 10x dj-stripe's: {ours['rps'] / peer['rps']:.1f}x "
          f"({ours['rps']:,.0f} vs {peer['rps']:,.1f} req/s; CPU per request {peer['cpu'] / ours['cpu']:.1f}x less); "
          f"end to end {ours_e2e['rate'] / peer_e2e['rate']:.1f}x ({ours_e2e['rate']:.0f} vs "
          f"{peer_e2e['rate']:.0f} events/s); same states: {states['mismatches']} mismatches (must be 0)")
    return 1 if states["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
