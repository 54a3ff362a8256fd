"""Secrets from files (ARCHITECTURE.md, "secrets from files"): every secret setting is also read from the
file named by `<NAME>_FILE`, without its trailing newline; setting both is an error naming both.

Each secret is checked the way a container starts: the settings module loaded in a fresh process, with
DEBUG off and nothing inherited from the test run. The list of secrets is every `env_secret(env, "X")`
in config/settings.py, so a secret added later is tested too."""

import json
import re
import subprocess
import sys
from pathlib import Path

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured

from config.secrets import env_secret

ROOT = Path(__file__).resolve().parents[2]
SECRETS = sorted(set(re.findall(r'env_secret\(env, "(\w+)"', (ROOT / "config" / "settings.py").read_text())))

# What a setting looks like once read, for the secrets not stored under their own name.
READERS = {
    "DATABASE_URL": "[settings.DATABASES['default'][k] for k in ('HOST', 'USER', 'PASSWORD', 'NAME')]",
    "EMAIL_URL": "[settings.EMAIL_HOST, settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD, "
                 "settings.EMAIL_USE_TLS]",
}
VALUES = {  # a value of the right form (URLs are parsed), and what the setting then holds
    "DATABASE_URL": ("postgres://billing:pw-from-file@db.internal:5432/billing",
                     ["db.internal", "billing", "pw-from-file", "billing"]),
    "EMAIL_URL": ("smtp+tls://mailer:pw-from-file@mail.example.com:587",
                  ["mail.example.com", "mailer", "pw-from-file", True]),
    "REDIS_URL": ("redis://:pw-from-file@redis.internal:6379/0", None),
    "CELERY_BROKER_URL": ("redis://:pw-from-file@broker.internal:6379/1", None),
    "SENTRY_DSN": ("https://public-key-from-file@sentry.example.com/1", None),
    "ALERT_WEBHOOK_URL": ("https://hooks.example.com/services/from-file", None),
    # A PEM: the lines inside are kept, only the trailing newline goes.
    "JWT_PUBLIC_KEY": ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
                       None),
}


def sample(name: str):
    value, expected = VALUES.get(name, (f"{name.lower()}-from-file", None))
    return value, value if expected is None else expected


def load_settings(env: dict, name: str) -> subprocess.CompletedProcess:
    """Loads config.settings in a clean process (DEBUG off, as in a container) and prints the setting."""
    reader = READERS.get(name, f"settings.{name}")
    code = f"import json; from django.conf import settings; print(json.dumps({reader}))"
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DJANGO_SETTINGS_MODULE": "config.settings"}
    if name != "SECRET_KEY":
        base["SECRET_KEY"] = "a-plain-secret-key-for-this-test"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_every_secret_setting_is_read_through_the_helper():
    # The contract's list (those that exist in this codebase); others join as they are added.
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "JWT_SECRET", "JWT_PUBLIC_KEY", "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET", "GOOGLE_PUBSUB_VERIFICATION_TOKEN", "XSOLLA_WEBHOOK_SECRET",
            "XSOLLA_API_KEY", "EMAIL_URL"} <= set(SECRETS)
    settings_text = (ROOT / "config" / "settings.py").read_text()
    for name in SECRETS:  # no second, plain read of the same name that would bypass the file
        assert not re.search(rf'env\.\w+\("{name}"', settings_text), name


@pytest.mark.parametrize("name", SECRETS)
def test_the_file_variant_is_read_without_its_trailing_newline(name, tmp_path):
    value, expected = sample(name)
    secret = tmp_path / "secret"
    secret.write_text(value + "\n")
    result = load_settings({f"{name}_FILE": str(secret)}, name)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


@pytest.mark.parametrize("name", SECRETS)
def test_both_the_variable_and_its_file_is_an_error_naming_both(name, tmp_path):
    value, _ = sample(name)
    secret = tmp_path / "secret"
    secret.write_text(value)
    result = load_settings({name: value, f"{name}_FILE": str(secret)}, name)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"Both {name} and {name}_FILE are set" in result.stderr


def test_the_plain_variable_still_works():
    result = load_settings({"STRIPE_WEBHOOK_SECRET": "whsec_plain"}, "STRIPE_WEBHOOK_SECRET")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "whsec_plain"


def test_a_missing_secret_key_names_both_ways_to_give_it():
    result = load_settings({}, "SECRET_KEY")
    assert result.returncode != 0
    assert "Set SECRET_KEY or SECRET_KEY_FILE" in result.stderr


def test_an_unreadable_file_is_named_and_stops_the_start(tmp_path):
    missing = tmp_path / "not-there"
    result = load_settings({"SECRET_KEY_FILE": str(missing)}, "SECRET_KEY")
    assert result.returncode != 0
    assert f"SECRET_KEY_FILE={missing}: the file cannot be read (No such file or directory)" in result.stderr


def env_with(environ_: dict) -> environ.Env:
    env = environ.Env()
    env.ENVIRON = environ_
    return env


def test_an_empty_file_is_an_unset_setting(tmp_path):
    # As with an empty variable (.env.example): the default, or an error for a required secret.
    empty = tmp_path / "empty"
    empty.write_text("\n")
    env = env_with({"XSOLLA_API_KEY_FILE": str(empty), "SECRET_KEY_FILE": str(empty)})
    assert env_secret(env, "XSOLLA_API_KEY", default="") == ""
    with pytest.raises(ImproperlyConfigured, match=f"SECRET_KEY_FILE={empty}: the file is empty"):
        env_secret(env, "SECRET_KEY")


def test_an_empty_plain_variable_does_not_count_as_set(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-the-file\r\n")
    env = env_with({"JWT_SECRET": "", "JWT_SECRET_FILE": str(secret), "STRIPE_SECRET_KEY_FILE": ""})
    assert env_secret(env, "JWT_SECRET", default="") == "from-the-file"
    assert env_secret(env, "STRIPE_SECRET_KEY", default="sk_default") == "sk_default"


def test_the_error_never_shows_the_secret(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do-not-print-me")
    result = load_settings({"JWT_SECRET": "do-not-print-me-either", "JWT_SECRET_FILE": str(secret)}, "JWT_SECRET")
    assert result.returncode != 0
    assert "do-not-print-me" not in result.stderr
