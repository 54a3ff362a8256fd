"""Secret settings read from the environment or from a file (the contract in ARCHITECTURE.md: every
secret setting also as `<NAME>_FILE`). Containers get secrets as files (docker compose and Kubernetes
mount them under /run/secrets), which keeps them out of `docker inspect`, `/proc/<pid>/environ` and
crash reports that dump the environment.

As everywhere in .env.example, an empty variable counts as unset. Setting both `<NAME>` and
`<NAME>_FILE` is an error rather than a silent preference: two sources of one secret drift apart."""

import environ
from django.core.exceptions import ImproperlyConfigured

NOTSET = environ.Env.NOTSET


def read_secret_file(file_variable: str, path: str) -> str:
    """The file's text without its trailing newline (`echo x > file` and editors add one)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ImproperlyConfigured(f"{file_variable}={path}: the file cannot be read ({reason}).") from error


def env_secret(env: environ.Env, name: str, default=NOTSET) -> str:
    """The secret `name`: from the file named by `<name>_FILE` when that is set, else as `env.str`
    reads `name` (with `default`; without one, a missing secret stops the start)."""
    file_variable = f"{name}_FILE"
    path = env.ENVIRON.get(file_variable, "")
    if path and env.ENVIRON.get(name, ""):
        raise ImproperlyConfigured(f"Both {name} and {file_variable} are set: set only one of them.")
    if path:
        value = read_secret_file(file_variable, path)
        if value:
            return value
        if default is NOTSET:
            raise ImproperlyConfigured(f"{file_variable}={path}: the file is empty.")
        return default
    if default is NOTSET and not env.ENVIRON.get(name, ""):
        raise ImproperlyConfigured(f"Set {name} or {file_variable} (a file holding it).")
    return env.str(name, default=default)
