"""What both benchmarks share: CPU accounting of the server, PostgreSQL and Redis processes."""

import subprocess
from pathlib import Path

import psycopg


def admin_url(db_url: str) -> str:
    """The same server's `postgres` database, to create or inspect the bench database."""
    return db_url.rsplit("/", 1)[0] + "/postgres"


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
