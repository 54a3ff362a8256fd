# Two commands do all set-up: `make run` (zero-setup: SQLite, tasks in-process) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8088

# The test database is built from the models (--nomigrations: dj-stripe's migrations alone take
# minutes); `make lint` checks that the migrations match the models.
# Test defaults: real PostgreSQL and Redis (database 15, flushed by the tests).
TEST_ENV := BILLING_TESTING=1 \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/billing} \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}

.PHONY: run test lint services install worker beat bench clean

# Packages are not byte-compiled at install (Python compiles what it imports, on first use): that
# halves a first `make run` (bench/first_start.py); the pip of the venv is recent enough as it is.
PIP_INSTALL := $(BIN)/pip install -q --disable-pip-version-check --no-compile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# `make run` needs only the runtime set; the test tools (browser driver, fuzzer, localstripe) come with
# `make test`. Both markers are kept, so switching between them installs nothing twice.
$(VENV)/.installed-base: requirements/base.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements/base.txt
	touch $@

$(VENV)/.installed: requirements/base.txt requirements/dev.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements/dev.txt
	touch $(VENV)/.installed-base $@

install: $(VENV)/.installed

# A new SQLite database is built from the models and its migrations recorded as applied
# (billing/management/commands/prepare_demo.py); an existing one is migrated.
run: $(VENV)/.installed-base
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py prepare_demo
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runserver $(HOST):$(PORT)

services:
	bash scripts/ensure_services.sh

lint: install
	$(BIN)/ruff check .
	BILLING_TESTING=1 $(BIN)/python manage.py makemigrations --check --dry-run

test: install services lint
	$(TEST_ENV) $(BIN)/pytest --create-db $(PYTEST_ARGS)

# One worker on every queue is enough locally; production runs `worker` and `worker-slow` apart (Procfile).
worker: install
	$(BIN)/celery -A config worker -Q webhooks,actions,slow -l info -c 2

beat: install
	$(BIN)/celery -A config beat -l info

clean:
	rm -rf $(VENV) var/db.sqlite3 var/static
