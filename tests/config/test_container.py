"""The container set-up (Dockerfile, docker-compose.yml, secrets/), checked without a container runtime
(none runs on the CI machines; docs/deploy.md "Containers" says what this does and does not prove):
the compose file parses and sets only known settings, its secrets are files read through `*_FILE`,
the Dockerfile's sources exist and reach the build, static files can be collected at build time
without secrets, and the guide's client is answered without credentials inside the compose network
and nowhere else."""

import ipaddress
import re
import shlex
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from tests.factories import SubscriberFactory, SubscriptionFactory

ROOT = Path(__file__).resolve().parents[2]
OUR_IMAGE = ("release", "billing", "worker", "worker-slow", "beat")  # the services built from ./Dockerfile
SETTINGS_TEXT = (ROOT / "config" / "settings.py").read_text()
SECRET_SETTINGS = set(re.findall(r'env_secret\(env, "(\w+)"', SETTINGS_TEXT))
# Secrets compose does not need as files: Redis has no password on the private network (the broker is
# REDIS_URL), and JWT_PUBLIC_KEY is JWT_SECRET's alternative for RS*/ES* tokens (add its file then).
NOT_IN_COMPOSE = {"REDIS_URL", "CELERY_BROKER_URL", "JWT_PUBLIC_KEY"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def known_settings() -> set[str]:
    """Every name the service reads: config/settings.py, the web server's modules and .env.example."""
    names = set(re.findall(r'env\.\w+\(\s*"(\w+)"', SETTINGS_TEXT))
    names |= set(re.findall(r'_rate_setting\("(\w+)"', SETTINGS_TEXT))
    names |= SECRET_SETTINGS | {f"{name}_FILE" for name in SECRET_SETTINGS}
    for module in ("gunicorn.py", "web.py", "granian_wsgi.py"):
        names |= set(re.findall(r"""env\.\w+\(['"](\w+)['"]""", (ROOT / "config" / module).read_text()))
    names |= set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    return names


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_the_compose_file_has_the_guides_services(compose):
    services = compose["services"]
    assert {"billing", "worker", "beat", "postgres", "redis", "release"} <= set(services)
    assert services["billing"]["command"] == "python -m config.web"
    assert services["billing"]["environment"]["ALLOWED_HOSTS"] == "billing"  # http://billing:8088
    for name in ("billing", "worker", "beat"):  # after the migrations, never beside them
        assert services[name]["depends_on"]["release"] == {"condition": "service_completed_successfully"}
    assert "migrate" in services["release"]["command"]


def test_the_compose_processes_are_the_procfiles(compose):
    # One definition of what runs: a process added to the Procfile needs its compose service.
    for process, command in procfile().items():
        if process == "release":  # static files are collected in the image, not at release
            assert command.startswith(compose["services"]["release"]["command"])
            continue
        service = "billing" if process == "web" else process
        assert compose["services"][service]["command"] == command, process


def test_nothing_is_published_on_the_host(compose):
    # The check API answers credential-less callers of the network: nothing reaches it from outside.
    assert [name for name, service in compose["services"].items() if "ports" in service] == []


def test_every_variable_compose_sets_is_a_known_setting(compose):
    known = known_settings()
    for name in OUR_IMAGE:
        unknown = set(compose["services"][name]["environment"]) - known
        assert not unknown, f"{name} sets {unknown}, which the service does not read"


def test_every_secret_is_a_file_read_through_its_file_variable(compose):
    declared = compose["secrets"]
    for name in OUR_IMAGE:
        service = compose["services"][name]
        file_variables = {k: v for k, v in service["environment"].items() if k.endswith("_FILE")}
        # Each points at a secret this service mounts (compose mounts secret X at /run/secrets/X).
        assert {v.removeprefix("/run/secrets/") for v in file_variables.values()} <= set(service["secrets"])
        assert {f"{s}_FILE" for s in SECRET_SETTINGS - NOT_IN_COMPOSE} <= set(file_variables), name
        # No secret as a plain value beside them; Redis's URL plainly, as it carries no password.
        assert not (SECRET_SETTINGS - NOT_IN_COMPOSE) & set(service["environment"]), name
        assert "@" not in service["environment"]["REDIS_URL"]
    readme = (ROOT / "secrets" / "README.md").read_text()
    for secret in declared.values():
        path = secret["file"]
        assert path.startswith("./secrets/")
        assert f"`{path.removeprefix('./secrets/')}`" in readme, f"secrets/README.md does not describe {path}"


def test_secrets_stay_out_of_git_and_the_image():
    ignored = subprocess.run(["git", "check-ignore", "secrets/secret_key", "secrets/README.md", "billing.env"],
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == ["secrets/secret_key", "billing.env"]
    patterns = dockerignore()
    for path in ("secrets/secret_key", ".env", ".git/config", ".venv/bin/python", "billing.env"):
        assert excluded(path, patterns), path


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def excluded(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (its patterns as used here:
    no `!` exceptions; a pattern matching a directory excludes everything under it)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch(prefix, pattern)
               for pattern in patterns for prefix in prefixes)


def dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_dockerfile_is_a_slim_non_root_image_serving_the_web_process():
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("EXPOSE", "8088") in instructions
    assert instructions[-1] == ("CMD", '["python", "-m", "config.web"]')
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "pip install -r requirements/base.txt" in runs and "collectstatic --noinput" in runs


def test_every_file_the_dockerfile_copies_exists_and_reaches_the_build():
    patterns = dockerignore()
    sources = [arg.split()[:-1] for op, arg in dockerfile() if op == "COPY"]
    assert sources
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), source
        assert source == "." or not excluded(source, patterns), f"{source} is excluded by .dockerignore"
    # What the image needs at run time is in the context.
    for needed in ("manage.py", "config/web.py", "config/granian_wsgi.py", "config/gunicorn.py",
                   "billing/providers/apple_roots", "templates"):
        assert not excluded(needed, patterns), needed


def build_step_env() -> tuple[dict, list[str]]:
    """The environment and command of the Dockerfile's collectstatic step, in a clean process."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp"}
    for op, arg in dockerfile():
        if op == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(arg)))
    step = next(arg for op, arg in dockerfile() if op == "RUN" and "collectstatic" in arg)
    command = next(part for part in step.split("&&") if "collectstatic" in part)
    words = shlex.split(command)
    while "=" in words[0]:  # VAR=value before the command: this step's environment only
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def test_static_files_are_collected_at_build_time_without_secrets():
    env, command = build_step_env()
    assert "SECRET_KEY" in env and "DEBUG" not in env  # production settings, a throwaway key
    result = subprocess.run([*command, "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "static files copied" in result.stdout
    # The throwaway key is needed (settings refuse to load without one) and is not the image's.
    image_env = {k: v for k, v in env.items() if k != "SECRET_KEY"}
    refused = subprocess.run([*command, "--dry-run"], cwd=ROOT, env=image_env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "Set SECRET_KEY or SECRET_KEY_FILE" in refused.stderr


def test_the_trusted_network_is_the_containers_not_the_gateway(compose):
    pool = compose["networks"]["internal"]["ipam"]["config"][0]
    subnet, containers = ipaddress.ip_network(pool["subnet"]), ipaddress.ip_network(pool["ip_range"])
    gateway = ipaddress.ip_address(pool["gateway"])
    trusted = [ipaddress.ip_network(n) for n in
               compose["services"]["billing"]["environment"]["CHECK_API_TRUSTED_NETWORKS"].split(",")]
    assert all(network.subnet_of(subnet) for network in trusted)  # nothing outside the network
    assert any(containers.subnet_of(network) for network in trusted)  # every address a container gets
    # The host and anything arriving through a published port come from the gateway.
    assert not any(gateway in network for network in trusted)


@pytest.mark.django_db
def test_the_guides_client_is_answered_inside_the_network_and_nowhere_else(compose, client, settings):
    environment = compose["services"]["billing"]["environment"]
    settings.ALLOWED_HOSTS = environment["ALLOWED_HOSTS"].split(",")
    settings.CHECK_API_TRUSTED_NETWORKS = environment["CHECK_API_TRUSTED_NETWORKS"].split(",")
    settings.TRUSTED_PROXIES = []
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="123"))
    pool = compose["networks"]["internal"]["ipam"]["config"][0]
    a_container = str(next(ipaddress.ip_network(pool["ip_range"]).hosts()))

    def check(address, host="billing:8088"):
        return client.get("/api/subscriptions/check/123", REMOTE_ADDR=address, HTTP_HOST=host)

    inside = check(a_container)  # GET http://billing:8088/api/subscriptions/check/123, no credentials
    assert inside.status_code == 200 and inside.json()["is_subscribed"] is True
    assert check(pool["gateway"]).status_code == 401  # the host, a published port
    assert check("203.0.113.7").status_code == 401  # anywhere else
    assert check(a_container, host="billing.example.com").status_code == 400  # not a host we serve


def test_the_compose_environment_starts_with_the_secrets_readmes_files(compose, tmp_path):
    # The release step's `manage.py check` with compose's environment for our image, the secret files
    # as secrets/README.md's script leaves them (the unused ones empty) and /run/secrets/ replaced by a
    # temporary directory.
    filled = {"secret_key": "k" * 50, "database_url": "postgres://billing:pw@postgres:5432/billing",
              "stripe_secret_key": "sk_live_from_file", "stripe_webhook_secret": "whsec_from_file\n"}
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "JWT_ISSUER": "https://auth.example.com", "JWT_AUDIENCE": "billing"}
    for name, value in compose["services"]["billing"]["environment"].items():
        if value.startswith("/run/secrets/"):
            secret = value.removeprefix("/run/secrets/")
            (tmp_path / secret).write_text(filled.get(secret, ""))
            value = str(tmp_path / secret)
        env[name] = value
    code = ("from django.conf import settings as s; print(s.DATABASES['default']['HOST'], s.STRIPE_WEBHOOK_SECRET, "
            "s.STRIPE_LIVE_MODE, s.XSOLLA_API_KEY == '', s.EMAIL_HOST, s.CHECK_API_TRUSTED_NETWORKS, s.DEBUG)")
    read = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["postgres", "whsec_from_file", "True", "True", "localhost", "['172.28.1.0/24']",
                                   "False"]
    check = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0, check.stderr
