"""`manage.py prepare_demo` (make run's set-up): a new SQLite database built from the models with every
migration recorded as applied, the demo data in it;
run again, it migrates the existing database and changes nothing. (That the models build the same
columns as the migrations is what `make lint`'s `makemigrations --check` guarantees.)"""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def manage(*args, database: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "BILLING_TESTING")}
    env.update(DEBUG="1", DATABASE_URL=f"sqlite:///{database}", DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def columns(database: Path) -> dict[str, set]:
    db = sqlite3.connect(database)
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: {row[1:4] for row in db.execute(f'PRAGMA table_info("{t}")')} for t in tables}


def test_a_new_database_is_built_from_the_models_and_its_migrations_recorded(tmp_path):
    database = tmp_path / "demo.sqlite3"
    done = manage("prepare_demo", database=database)
    assert done.returncode == 0, done.stderr
    assert "built from the models" in done.stdout
    assert manage("migrate", "--check", database=database).returncode == 0  # nothing left to apply
    db = sqlite3.connect(database)
    assert db.execute("SELECT count(*) FROM accounts_subscriber WHERE external_id = '1001'").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM billing_subscription").fetchone()[0] >= 8
    built = columns(database)

    again = manage("prepare_demo", database=database)
    assert again.returncode == 0, again.stderr
    assert "built from the models" not in again.stdout
    assert columns(database) == built
    assert db.execute("SELECT count(*) FROM billing_transaction").fetchone()[0] == len(
        set(db.execute("SELECT provider, provider_transaction_id FROM billing_transaction")))
