"""Test defaults, set before Django reads its settings: real PostgreSQL and Redis (as `make test`
sets them); Celery tasks run in-process unless a test starts a real worker."""

import os

os.environ.setdefault("BILLING_TESTING", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/billing")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
# The tests call from the test client's 127.0.0.1 as `make run` trusts it; with DEBUG off (as here) no
# network is trusted unless named.
os.environ.setdefault("CHECK_API_TRUSTED_NETWORKS", "127.0.0.0/8,::1/128")
