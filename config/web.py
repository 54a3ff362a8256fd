"""The `web` process (Procfile, Dockerfile, docker-compose.yml): `python -m config.web` runs granian
serving config.granian_wsgi, from the same environment as Django's (docs/deploy.md "The web server").

granian was chosen over gunicorn by the measure issue 17 set (bench/check_api.py: more cached checks per
CPU second, the p99 met); gunicorn stays the documented alternative, `gunicorn -c python:config.gunicorn
config.wsgi`, with its JSON answers to malformed HTTP. Each worker runs one request at a time (one
blocking thread), as a gunicorn sync worker does: a request holds one database connection, and a worker
that exceeds WEB_TIMEOUT is ended and replaced (config/granian_wsgi.py). The application is loaded once
before granian starts, so that a setting that refuses to start ends this command (exit status 1)."""

import os
import sys
from pathlib import Path

import environ

ROOT = Path(__file__).resolve().parent.parent


def command() -> list[str]:
    env = environ.Env()
    env.read_env(ROOT / ".env", overwrite=False)
    granian = Path(sys.executable).with_name("granian")
    return [str(granian) if granian.exists() else "granian", "config.granian_wsgi:application",
            "--interface", "wsgi", "--host", env.str("WEB_HOST", default="0.0.0.0"),  # noqa: S104 (a container's port)
            "--port", str(env.int("PORT", default=8088)), "--workers", str(env.int("WEB_CONCURRENCY", default=3)),
            "--blocking-threads", "1", "--runtime-threads", "1", "--http", "1", "--no-ws",
            "--http1-buffer-size", "65536",  # request line and headers: a 64 KiB read buffer, else 431 (or 414)
            "--respawn-failed-workers",  # a worker ended at WEB_TIMEOUT (or crashed) is replaced
            "--workers-kill-timeout", "30",  # a stop or reload waits this long for running requests
            "--log-level", env.str("LOG_LEVEL", default="INFO").lower()]


def main() -> None:
    argv = command()
    os.chdir(ROOT)  # granian imports config.granian_wsgi from the working directory
    # Loaded once here first: settings that refuse to start (config/startup.py) or an import error end
    # this command with the reason, where granian would respawn a failing worker again and again.
    import config.granian_wsgi  # noqa: F401
    os.execvp(argv[0], argv)  # noqa: S606 (the argv is ours: no shell, no input)


if __name__ == "__main__":
    main()
