# The verbs a newcomer looks for. `make run` and `make test` are the two that matter.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The first interpreter that is Python 3.12 or newer (Django 6 needs it).
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	command -v $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help run credentials test test-faults lint format typecheck worker web migrate seed bench clean

help:
	@echo "make run        set up, start PostgreSQL (embedded unless DATABASE_URL), migrate, load demo data,"
	@echo "                create an admin user, serve the admin on 127.0.0.1:8000 and run the workers"
	@echo "make credentials the admin's URL, username and password and the API token again (after make run)"
	@echo "make test       the test suite, lint, type check and migration checks"
	@echo "make test-faults the database-fault tests (a private PostgreSQL cluster, restarted and cut)"
	@echo "make lint       ruff (lint and format check)"
	@echo "make worker     the workers only (all queues, with the scheduler)"
	@echo "make bench      the benchmarks in bench/ (long; prints figures)"

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then echo "KGC needs Python 3.12 or newer: install it (e.g. pyenv install 3.12) or run make PYTHON=/path/to/python3.12"; exit 1; fi
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

run: $(STAMP)
	DEBUG=$${DEBUG:-true} bin/dev

credentials: $(STAMP)
	@DEBUG=$${DEBUG:-true} $(BIN)/python manage.py ensure_admin --show --url "http://127.0.0.1:$${PORT:-8000}"

worker: $(STAMP)
	$(BIN)/python manage.py runworkers

web: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py runserver 127.0.0.1:8000

migrate: $(STAMP)
	$(BIN)/python manage.py migrate

seed: $(STAMP)
	$(BIN)/python manage.py seed_demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The type checker loads the settings, which only parse DATABASE_URL; with none set they would
# start the embedded PostgreSQL, and mypy exits without the clean-up that stops it.
typecheck: $(STAMP)
	DEBUG=true DATABASE_URL=$${DATABASE_URL:-postgresql://localhost/typecheck} $(BIN)/mypy kgc compliance notifications

# TypeScript (the client's type check and tests) from the lockfile.
NODE_DEPS := clients/typescript/node_modules/.package-lock.json
$(NODE_DEPS): clients/typescript/package-lock.json
	npm ci --prefix clients/typescript --no-audit --no-fund

test: $(STAMP) lint typecheck $(NODE_DEPS)
	DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run
	DEBUG=true $(BIN)/pytest -m "not fault"

# The database-fault tests: each starts a private PostgreSQL cluster and restarts, stops or
# cuts it (a few minutes; CI runs them after `make test`).
test-faults: $(STAMP)
	DEBUG=true $(BIN)/pytest -m fault

bench: $(STAMP)
	@for name in queue refresh reminders email first_run admin; do echo "== bench/$$name.py"; DEBUG=true $(BIN)/python -m bench.$$name || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
