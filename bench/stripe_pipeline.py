"""Benchmark of real Stripe events end to end: signed events, as the Stripe API fake emits them, stored
through the real adapter (POST /webhooks/stripe), then processed by one worker process that re-reads each
subscription from the fake, running as a server in this process.

    .venv/bin/python bench/stripe_pipeline.py      # needs PostgreSQL and Redis

Builds a separate database (BENCH_DATABASE_URL, default .../billing_bench_stripepipe; dropped and created
each run) from the models. For each row: BENCH_SUBSCRIPTIONS subscriptions are started at the fake (each
emits customer.subscription.created, invoice.* and payment events; every renewal adds its own), their
events are POSTed (signed) and stored, then one `celery worker -P solo` is started and timed from
"ready." until every stored event is processed or ignored. Worker CPU per event = utime+stime of the
worker process over the drain (its start-up excluded).

Rows:
- "Procfile queues": the worker consumes `webhooks,actions,celery`, as the Procfile's `worker` does; the
  dj-stripe mirror runs there if it is routed there;
- "webhooks queue only": the mirror's tasks are not consumed by this worker (the pipeline alone);
- "slow worker beside": the Procfile's `worker-slow` runs at the same time (the mirror's own worker);
  the time until dj-stripe holds every event is reported too.
"""

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: bench/ is not a package root

from bench.harness import cpu_ticks, schema_database  # noqa: E402
from bench.stripe_events import WEBHOOK_SECRET, pending, process_env, start_worker, wait_ready  # noqa: E402
from bench.stripe_events import make_events as fake_events  # noqa: E402

DB_URL = os.environ.get("BENCH_DATABASE_URL",
                        "postgres://postgres:postgres@127.0.0.1:5432/billing_bench_stripepipe")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
SUBSCRIPTIONS = int(os.environ.get("BENCH_SUBSCRIPTIONS", "150"))
TIMEOUT = int(os.environ.get("BENCH_TIMEOUT", "600"))
RENEWALS = int(os.environ.get("BENCH_RENEWALS", "1"))
FAKE_PORT = int(os.environ.get("BENCH_FAKE_PORT", "9150"))
TICKS = os.sysconf("SC_CLK_TCK")


def env(fake_url: str = "", **extra) -> dict:
    return process_env(db_url=DB_URL, redis_url=REDIS_URL, fake_url=fake_url, settings_module="config.settings",
                       allowed_hosts="testserver,127.0.0.1", stream="bench:stripepipe", **extra)


def create_database() -> None:
    schema_database(DB_URL, env(), fresh=True)


def setup_django(fake_url: str) -> None:
    os.environ.update(env(fake_url))
    import django

    django.setup()


def reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE webhooks_webhookevent, webhooks_webhookevent_subscriptions CASCADE")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def make_events(fake, run: str) -> list[dict]:
    return fake_events(fake, run, SUBSCRIPTIONS, RENEWALS)


def post_events(events: list[dict]) -> int:
    """POST each event, signed, through the real adapter (the answer path: verify, store, enqueue)."""
    import json

    from django.test import Client

    from tests.fakes.stripe import sign

    client, size = Client(), 0
    for event in events:
        body = json.dumps(event).encode()
        size += len(body)
        response = client.post("/webhooks/stripe", data=body, content_type="application/json",
                               headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)})
        assert response.status_code == 200, response.content
    return size // max(len(events), 1)


def mirrored() -> int:
    from djstripe.models import Event

    return Event.objects.count()


def run_row(fake, label: str, queues: str, *, slow_beside: bool = False) -> dict:
    reset()
    events = make_events(fake, label.split()[0][:6] + str(int(time.time() * 1000) % 100000))
    mirrored_before = mirrored()
    # Events stored while no worker runs: the drain task waits in the queue for the worker.
    size = post_events(events)
    logs = [tempfile.mkstemp(suffix=".log", prefix="stripepipe-")[1] for _ in range(2)]
    slow = start_worker(env(fake.url), "slow", logs[1]) if slow_beside else None
    worker = start_worker(env(fake.url), queues, logs[0])
    try:
        wait_ready(worker, logs[0])
        if slow is not None:
            wait_ready(slow, logs[1])
        started, ticks, calls = time.monotonic(), cpu_ticks([worker.pid]), len(fake.requests)
        deadline = started + TIMEOUT
        while pending():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pending()} events still pending after {TIMEOUT} s; the worker's log ends: "
                                   + Path(logs[0]).read_text()[-3000:])
            time.sleep(0.02)
        seconds = time.monotonic() - started
        cpu = (cpu_ticks([worker.pid]) - ticks) / TICKS
        calls = len(fake.requests) - calls  # the pipeline's Stripe API calls (and the mirror's, when it runs)
        # The mirror: until dj-stripe holds every event, or nothing more is mirrored for 3 s (its tasks
        # are on a queue no worker of this row consumes).
        mirror_seconds, count, last_change = None, None, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_change < 3:
            now = mirrored() - mirrored_before
            if now != count:
                count, last_change = now, time.monotonic()
            if count >= len(events):
                mirror_seconds = time.monotonic() - started
                break
            time.sleep(0.05)
        cpu_total = (cpu_ticks([worker.pid]) - ticks) / TICKS
    finally:
        for proc in (worker, slow):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        for name in logs:
            os.unlink(name)
    row = {"label": label, "events": len(events), "size": size, "seconds": seconds,
           "rate": len(events) / seconds, "cpu_us": cpu / len(events) * 1e6, "mirror_seconds": mirror_seconds,
           "cpu_total_us": cpu_total / len(events) * 1e6,
           "mirrored": mirrored() - mirrored_before, "calls": calls / len(events)}
    print(f"  {label}: {row['events']} events (~{size} bytes) in {seconds:.1f} s = {row['rate']:.1f} events/s, "
          f"worker CPU {row['cpu_us']:,.0f} µs/event, {row['calls']:.2f} Stripe API calls/event, "
          f"dj-stripe holds {row['mirrored']}"
          + (f" (all mirrored after {mirror_seconds:.1f} s)" if mirror_seconds else ""), flush=True)
    return row


def main() -> int:
    from tests.fakes.stripe import FakeStripe

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the workers are stopped on the way out
    began = time.monotonic()
    fake = FakeStripe().start(FAKE_PORT)
    print(f"the Stripe API fake at {fake.url}", flush=True)
    try:
        print("building the bench database ...", flush=True)
        create_database()
        setup_django(fake.url)
        rows = [
            run_row(fake, "Procfile queues (webhooks,actions,celery)", "webhooks,actions,celery"),
            run_row(fake, "webhooks queue only", "webhooks"),
            run_row(fake, "Procfile queues + slow worker beside", "webhooks,actions,celery", slow_beside=True),
        ]
    finally:
        fake.stop()
    print(f"\none worker process (-P solo), {SUBSCRIPTIONS} subscriptions x (start + {RENEWALS} renewal) per row, "
          f"each event re-read from the Stripe API fake (run took {time.monotonic() - began:.0f} s)\n")
    print(f"{'':44} {'events':>7} {'events/s':>9} {'CPU µs/event':>13} {'API calls/event':>16} {'mirrored':>9} "
          f"{'all mirrored':>13} "
          f"{'worker CPU µs/event incl. mirror':>33}")
    for r in rows:
        done = f"{r['events'] / r['mirror_seconds']:.1f}/s" if r["mirror_seconds"] else "-"
        print(f"{r['label']:44} {r['events']:7d} {r['rate']:9.1f} {r['cpu_us']:13,.0f} {r['calls']:16.2f} "
              f"{r['mirrored']:9d} {done:>13} "
              f"{r['cpu_total_us']:33,.0f}")
    print("(events/s: until every event is processed; all mirrored: events / time until dj-stripe holds every "
          "event; the pipeline worker's CPU includes the mirror only when it runs the mirror's tasks)")
    print(f"\ntarget: ≥ 250 events/s without the mirror on the pipeline's worker: {rows[0]['rate']:.0f} "
          "(Procfile queues)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
