"""The production settings of docs/deploy.md: `manage.py check --deploy` has nothing to say, HTTPS and
the content security policy are on, and BILLING_TESTING cannot reach a production process."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import closed_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
def documented_env() -> dict:
    """The dotenv block of docs/deploy.md, as a clean environment (nothing inherited from the tests)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"```dotenv\n(.*?)```", text, re.S).group(1)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    for line in block.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def run(args: list, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def issue_ids(output: str) -> set[str]:
    return set(re.findall(r"^\S*: \(([\w.]+)\)", output, re.M))


def test_check_deploy_is_clean_with_the_documented_settings():
    result = run([sys.executable, "manage.py", "check", "--deploy"], documented_env())
    output = result.stdout + result.stderr
    print(output)  # the figure for the report
    assert result.returncode == 0, output
    assert issue_ids(output) == set(), output
    assert "System check identified no issues" in output


def test_check_deploy_names_what_the_defaults_lack():
    # The same without the HTTPS settings: the deploy check is a real check, not a silenced one.
    env = {k: v for k, v in documented_env().items() if not k.startswith("SECURE_")}
    output = run([sys.executable, "manage.py", "check", "--deploy"], env).stderr
    assert {"security.W008", "security.W005", "security.W021"} <= issue_ids(output)
    assert "security.W004" not in issue_ids(output)  # HSTS is on by default without DEBUG


def test_billing_testing_fails_the_deploy_check():
    result = run([sys.executable, "manage.py", "check", "--deploy"], {**documented_env(), "BILLING_TESTING": "1"})
    assert result.returncode != 0 and "accounts.E002" in result.stderr
    assert "BILLING_TESTING=1 with DEBUG off: refusing to start" in result.stderr


def test_gunicorn_refuses_to_start_with_billing_testing():
    env = {**documented_env(), "BILLING_TESTING": "1", "PORT": str(closed_port()), "WEB_CONCURRENCY": "1"}
    result = run([str(BIN / "gunicorn"), "-c", "python:config.gunicorn", "config.wsgi"], env, timeout=60)
    assert result.returncode != 0
    assert "BILLING_TESTING=1 with DEBUG off: refusing to start" in result.stderr


def test_the_web_command_refuses_to_start_with_billing_testing():
    # It ends (status 1) instead of granian respawning a worker that cannot start, again and again.
    env = {**documented_env(), "BILLING_TESTING": "1", "PORT": str(closed_port()), "WEB_CONCURRENCY": "1"}
    result = run([sys.executable, "-m", "config.web"], env, timeout=60)
    assert result.returncode == 1
    assert "BILLING_TESTING=1 with DEBUG off: refusing to start" in result.stderr


def test_a_celery_worker_refuses_to_start_with_billing_testing():
    env = {**documented_env(), "BILLING_TESTING": "1", "CELERY_BROKER_URL": "memory://"}
    result = run([str(BIN / "celery"), "-A", "config", "worker", "-c", "1", "-P", "solo"], env, timeout=60)
    assert result.returncode != 0
    assert "BILLING_TESTING=1 with DEBUG off: refusing to start" in result.stdout + result.stderr


def test_makemigrations_check_still_runs_with_billing_testing():
    # `make lint` runs this with config.settings, BILLING_TESTING=1 and DEBUG off.
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "BILLING_TESTING": "1", "DATABASE_URL": os.environ["DATABASE_URL"]}
    result = run([sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"], env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_https_headers_and_content_security_policy_on_the_admin(client):
    response = client.get("/admin/login/", secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000"
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    # Django's admin login page itself carries no inline script the policy would block.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.content.decode())
    assert response.cookies["csrftoken"]["secure"]


@pytest.mark.django_db
def test_ssl_redirect_spares_the_probe_and_the_check_api(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/health").status_code == 200
    assert client.get("/api/subscriptions/check/1").status_code == 200
