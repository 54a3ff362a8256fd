"""Test defaults, set before Django reads its settings: real PostgreSQL and Redis (as `make test`
sets them); Celery tasks run in-process unless a test starts a real worker."""

import os

os.environ.setdefault("BILLING_TESTING", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/billing")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
