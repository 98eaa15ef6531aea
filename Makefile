# The README's commands. Everything runs inside .venv, built from uv.lock.
SHELL := /bin/bash
PY := .venv/bin/python
UV_VERSION := 0.13.9
# uv from PATH, else the one `make install` puts in Python's user site (python3 -m pip install uv).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: install services migrate run test lint format bench bench-scale clean FORCE

install: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --python 3.11
	@touch $@

services:
	bash scripts/services.sh

migrate: install services
	$(PY) -m migrations

# `make run`'s logs: console lines on a terminal, JSON when make's output goes elsewhere (a pipe, a file, CI).
# LOG_FORMAT in the environment, else in .env, decides instead. The processes write into the process manager's
# pipes and cannot tell themselves; make knows (MAKE_TERMOUT, set by GNU make when its stdout is a terminal).
RUN_LOG_FORMAT := $(or $(LOG_FORMAT),$(shell sed -n 's/^LOG_FORMAT=//p' .env 2>/dev/null),$(if $(MAKE_TERMOUT),console,json))
run: export LOG_FORMAT := $(RUN_LOG_FORMAT)
# And one line per event from the relay and the cache worker (LOG_EVENTS), so that each write's way shows under its
# request id; off by default elsewhere (profiled: 21 % of the relay's CPU, 12 % of the cache worker's). LOG_EVENTS=false turns them off.
RUN_LOG_EVENTS := $(or $(LOG_EVENTS),$(shell sed -n 's/^LOG_EVENTS=//p' .env 2>/dev/null),true)
run: export LOG_EVENTS := $(RUN_LOG_EVENTS)

## The whole stack, locally: services checked/started, migrations, then every process (Ctrl-C stops all).
run: var/stack.running

# The runner (scripts/procs.py) keeps this file while the stack runs and stops the stack once it is gone. On
# SIGINT, SIGTERM, SIGHUP or SIGQUIT, make deletes the target of a recipe still running, even when (a SIGINT sent
# to make's pid alone) it passes the signal on to nobody: so every way of stopping make stops every process.
PROCFILE ?= Procfile
var/stack.running: migrate FORCE
	mkdir -p var/media
	$(PY) -m worker cache rebuild --if-missing
	exec $(PY) scripts/procs.py --while $@ $(PROCFILE)

FORCE:

## The whole test suite against the real PostgreSQL, Redis and RabbitMQ (exit 5, "no tests", fails too).
test: install services
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/lint-imports

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	bash scripts/services.sh --bench
	$(PY) -m bench

bench-scale: install
	bash scripts/services.sh --bench
	$(PY) -m bench scale

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache var
