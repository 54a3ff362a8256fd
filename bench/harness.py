"""What the benchmarks share: their database (schema built from the models), CPU accounting of the server,
PostgreSQL and Redis processes."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg


def admin_url(db_url: str) -> str:
    """The same server's `postgres` database, to create or inspect the bench database."""
    return db_url.rsplit("/", 1)[0] + "/postgres"


ROOT = Path(__file__).resolve().parent.parent


def schema_database(db_url: str, env: dict, *, fresh: bool, table: str = "billing_subscription") -> bool:
    """The bench database, its schema built from the models (bench/settings_syncdb.py: seconds, not the
    migrations' minutes). `fresh`: dropped and made anew; otherwise made only when missing, and the schema
    built only when `table` is missing (seeded rows are reused). Returns whether the schema was built."""
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(db_url), autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if fresh or not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    if not fresh:
        with psycopg.connect(db_url) as conn:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
                return False
    print("building the schema from the models ...", flush=True)
    subprocess.run([str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable,
                    "manage.py", "migrate", "--run-syncdb", "--noinput", "-v", "0", "--settings",
                    "bench.settings_syncdb"], cwd=ROOT, env=env, check=True)
    return True


def cpu_ticks(pids) -> int:
    """utime + stime of the processes, in clock ticks (processes that ended count as 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, IndexError):
            pass
    return total


def backend_pids(db_url: str) -> list[int]:
    """PostgreSQL backends serving the bench database."""
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(db_url)) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (name,)).fetchall()
    return [r[0] for r in rows]


def redis_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def ensure_wrk() -> bool:
    """wrk on the PATH, installed from Debian's packages when absent (as scripts/ensure_services.sh does
    for PostgreSQL and Redis), so a bench runs from one command on a fresh machine."""
    import shutil

    if shutil.which("wrk"):
        return True
    print("wrk is not installed: installing it from Debian's packages", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False,
                   stdout=subprocess.DEVNULL)
    return shutil.which("wrk") is not None
