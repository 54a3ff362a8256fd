"""Where a check API request's time goes, in-process: cProfile of GET /api/subscriptions/check/<id>
through config.wsgi's application (what gunicorn calls; granian calls it behind config/granian_wsgi.py's
~2 µs guard), cache hits or, with --no-redis, the database.

    .venv/bin/python bench/check_profile.py [--no-redis | --bare] [-n 5000] [--top 20]

Uses bench/check_api.py's database (BENCH_DATABASE_URL; run that first: it seeds it) and Redis
(BENCH_REDIS_URL). Prints CPU µs per request (time.process_time, the Redis/PostgreSQL servers not
counted) and the top of the profile by own time. --bare: the same for bench/bare_wsgi.py (the bare Django
JSON view the check is measured against), so the app's own share can be compared without a server's.
A server adds its own CPU per request on top of both (HTTP parsing, the socket calls: ~100-150 µs
under gunicorn sync on these machines), and redis-server's share of a cache hit (~25 µs per GET) is
not counted here."""

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.check_api import DB_URL, REDIS_URL


def main() -> int:
    parser = argparse.ArgumentParser()
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--no-redis", action="store_true")
    which.add_argument("--bare", action="store_true", help="the bare Django JSON view (bench/bare_wsgi.py)")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    os.environ.update({"DATABASE_URL": DB_URL, "REDIS_URL": "" if args.no_redis else REDIS_URL,
                       "SECRET_KEY": "bench-only", "DEBUG": "0", "BILLING_TESTING": "0", "LOG_LEVEL": "WARNING",
                       "ALLOWED_HOSTS": "127.0.0.1,localhost", "CHECK_API_TRUSTED_NETWORKS": "127.0.0.0/8"})
    if args.bare:
        from bench.bare_wsgi import application
    else:
        from config.wsgi import application

    def call(uid: str) -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/api/subscriptions/check/{uid}", "QUERY_STRING": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
                   "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http",
                   "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": ""}
        body = application(environ, lambda status, headers, exc_info=None: None)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()  # Django's request_finished (connection upkeep), as a server does

    ids = [str(i) for i in range(1, 2001)]
    for uid in ids:  # fills the cache, opens connections
        call(uid)
    started = time.process_time()
    for i in range(args.n):
        call(ids[i % len(ids)])
    print(f"{(time.process_time() - started) / args.n * 1e6:.0f} µs CPU per request in-process "
          f"({'bare view' if args.bare else 'no Redis' if args.no_redis else 'cache hits'})")
    profile = cProfile.Profile()
    profile.enable()
    for i in range(args.n):
        call(ids[i % len(ids)])
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
