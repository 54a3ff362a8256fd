"""The project's settings with the baseline export view routed beside the app (bench/export.py)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.export_urls"
