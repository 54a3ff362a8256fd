"""The project's settings with dj-stripe's webhook view routed beside the app (bench/vs_djstripe.py), and,
for the bench's own process, dj-stripe's database as a second alias (`peer`) to set up and read."""

import os

import environ

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.peer_urls"
if os.environ.get("BENCH_PEER_DATABASE_URL"):
    DATABASES["peer"] = environ.Env.db_url_config(os.environ["BENCH_PEER_DATABASE_URL"])  # noqa: F405
