"""How long `make run` takes from a fresh clone to its first answer (issue 17: at most 45 s once the
packages are in pip's cache). Clones the repository's HEAD into a temporary directory, runs `make run`
on a free port, polls /health, prints the time of each phase, then stops the server.

    python bench/first_start.py [--runs 3]
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 45


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def one_run() -> dict:
    with tempfile.TemporaryDirectory(prefix="first-start-") as tmp:
        clone = Path(tmp) / "billing-service"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "BILLING_TESTING")}
        log = (Path(tmp) / "make-run.log").open("wb")
        started = time.monotonic()
        proc = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=clone, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        marks = {}
        try:
            while time.monotonic() - started < 600:
                text = (Path(tmp) / "make-run.log").read_bytes()
                if "installed" not in marks and b"prepare_demo" in text:
                    marks["installed"] = time.monotonic() - started
                if "database and demo data" not in marks and b"runserver" in text:
                    marks["database and demo data"] = time.monotonic() - started
                if answers(f"http://127.0.0.1:{port}/health"):
                    marks["first answer"] = time.monotonic() - started
                    break
                if proc.poll() is not None:
                    sys.exit(f"make run ended early:\n{text.decode(errors='replace')[-3000:]}")
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        return marks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        marks = one_run()
        phases = ", ".join(f"{name} at {seconds:.1f} s" for name, seconds in marks.items())
        total = marks.get("first answer", float("nan"))
        verdict = "met" if total <= TARGET_SECONDS else "NOT met"
        print(f"run {run}: {phases}; target ≤ {TARGET_SECONDS} s: {verdict}")


if __name__ == "__main__":
    main()
