"""Where an acknowledgement's CPU goes: POST /webhooks/<store> through the WSGI application (config/wsgi.py,
as gunicorn serves it), in-process, under cProfile; CPU µs per request measured without the profiler.

    .venv/bin/python bench/webhook_profile.py [hooktest|stripe|apple|google|xsolla ...] [--requests N]
    .venv/bin/python bench/webhook_profile.py --drain N     # the worker's drain of N test-adapter events
    .venv/bin/python bench/webhook_profile.py stripe apple --auth-only   # the adapter's part, no database

Uses bench/webhook_ingest.py's database, Redis and store bodies (BENCH_DATABASE_URL, BENCH_REDIS_URL); builds
the database when it is missing. Prints per store: CPU µs/request, then the top of the profile by own time
and by cumulative time. `--auth-only`: the CPU of what the answer does with a body before storing it
(adapter.authenticate, the storable check, the headers kept), no database, the best and the median of 7
rounds: steadier than the whole answer's on a shared machine."""

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench/ is not a package root

from bench import webhook_ingest as bench
from bench.harness import schema_database


def wsgi_call(application, path: str, headers: dict, body: bytes) -> str:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1"}
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    answered = []
    result = application(environ, lambda status, headers, exc_info=None: answered.append(status))
    b"".join(result)
    if hasattr(result, "close"):
        result.close()
    return answered[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stores", nargs="*", default=["hooktest", "stripe", "apple", "google", "xsolla"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--drain", type=int, default=0, help="profile processing N stored test-adapter events")
    parser.add_argument("--auth-only", action="store_true", help="CPU of authenticate + storable, no database")
    args = parser.parse_args()

    from bench.webhook_stores import Stores

    stores = Stores(bench.FAKE_PORT)
    bench._store_settings.update(stores.settings)
    os.environ.update(bench.env(BENCH_WEBHOOK_APP="0"))
    schema_database(bench.DB_URL, bench.env(BENCH_WEBHOOK_APP="0"), fresh=False)
    try:
        from config.wsgi import application

        if args.drain:
            drain_profile(application, args.drain, args.top)
            return 0
        if args.auth_only:
            for store in args.stores:
                requests = bench.hooktest_requests if store == "hooktest" else stores.requests(store)
                auth_only(store, list(requests(f"a{uuid.uuid4().hex[:8]}", min(args.requests, 1000))))
            return 0
        for store in args.stores:
            requests = bench.hooktest_requests if store == "hooktest" else stores.requests(store)
            run = uuid.uuid4().hex[:8]
            warm, timed, profiled = (list(requests(f"{k}{run}", n)) for k, n in
                                     (("w", 200), ("t", args.requests), ("p", args.requests)))
            path = f"/webhooks/{store}"
            for headers, body in warm:
                assert wsgi_call(application, path, headers, body).startswith("2"), store
            started = time.process_time()
            for headers, body in timed:
                wsgi_call(application, path, headers, body)
            cpu = (time.process_time() - started) / len(timed) * 1e6
            profile = cProfile.Profile()
            profile.enable()
            for headers, body in profiled:
                wsgi_call(application, path, headers, body)
            profile.disable()
            print(f"\n=== {store}: {cpu:,.0f} µs CPU per request (in-process, without the profiler) ===")
            print_top(profile, args.top)
    finally:
        stores.stop()
    return 0


def auth_only(store: str, requests: list) -> None:
    from django.http.request import HttpHeaders

    from billing.providers import registry
    from webhooks import bodies, ingest

    adapter = registry.get_adapter(store)
    prepared = [(HttpHeaders({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}), body)
                for headers, body in requests]
    rounds = []
    for _ in range(7):
        started = time.process_time()
        for headers, body in prepared:
            bodies.storable(adapter.authenticate(headers, body, {}), body)
            ingest.headers_to_store(headers)
        rounds.append((time.process_time() - started) / len(prepared) * 1e6)
    rounds.sort()
    print(f"=== {store}: authenticate + storable {rounds[0]:,.0f} µs CPU per request (median of 7 rounds "
          f"{rounds[3]:,.0f}; no database) ===")


def print_top(profile: cProfile.Profile, top: int) -> None:
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(order).print_stats(top)
        print(out.getvalue().split("\n", 6)[-1].rstrip())


def drain_profile(application, count: int, top: int) -> None:
    """Store `count` new test-adapter events (no worker runs), then drain them here as the worker's task
    does, timed (wall and CPU) and then again under cProfile."""
    from webhooks import processing

    bench.reset_queue()
    for label in ("timed", "profiled"):
        run = uuid.uuid4().hex[:8]
        for headers, body in bench.hooktest_requests(run, count):
            assert wsgi_call(application, "/webhooks/hooktest", headers, body).startswith("2")
        bench.redis_client().delete("webhooks:drain-scheduled")
        profile = cProfile.Profile() if label == "profiled" else None
        wall, cpu = time.monotonic(), time.process_time()
        if profile:
            profile.enable()
        done, _ = processing.events_drain()
        if profile:
            profile.disable()
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        print(f"\n=== drain ({label}): {done} events in {wall:.2f} s: {done / wall:,.0f} events/s, "
              f"{cpu / max(done, 1) * 1e6:,.0f} µs CPU per event ===")
    print_top(profile, top)


if __name__ == "__main__":
    sys.exit(main())
