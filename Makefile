# meshgate: the one test command is `make test` (CI runs exactly that, via .ci/run).
#
#   make test    bootstrap .venv, make sure RabbitMQ/Mosquitto/NATS listen on loopback
#                (starting what is missing), then run the whole pytest suite
#   make demo    bootstrap the runtime and what the demo needs only (local brokers and
#                an MQTT client; no test or lint tools: MESHGATE_EXTRAS=demo), then
#                run `meshgate demo`
#   make lint    ruff check + mypy (strict, packages listed in pyproject.toml)
#   make bench   bootstrap + brokers, then `python -m bench`
#
# Variables: PYTEST_ARGS (extra pytest arguments, e.g. PYTEST_ARGS='-k kafka'),
# TEST_TIMEOUT (seconds per test, default 120), SUITE_TIMEOUT (seconds for the whole
# suite, default 1800 = 30 min; the suite is killed and fails past it: a hung test
# must not use up CI's 90 min), TEST_WORKERS (default 2: tests/unit, tests/integration
# and tests/deploy run on that many pytest-xdist workers, then tests/faults and
# tests/security in one process alone; 0: everything in one process; see
# scripts/run-tests.sh). The 15 slowest tests of each run are listed (--durations).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV ?= .venv
PY := $(VENV)/bin/python
TEST_TIMEOUT ?= 120
SUITE_TIMEOUT ?= 1800
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: test demo lint bench bootstrap brokers

bootstrap:
	@bash scripts/bootstrap.sh

brokers: bootstrap
	@bash scripts/ensure-brokers.sh

test: bootstrap brokers
	PY=$(PY) TEST_TIMEOUT=$(TEST_TIMEOUT) TEST_WORKERS=$(TEST_WORKERS) \
		timeout --foreground --kill-after=30 $(SUITE_TIMEOUT) bash scripts/run-tests.sh $(PYTEST_ARGS)

demo:
	@MESHGATE_EXTRAS=demo bash scripts/bootstrap.sh
	$(VENV)/bin/meshgate demo

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: bootstrap
	@if [[ ! -f bench/__main__.py ]]; then \
		echo "make bench: error: bench/__main__.py does not exist, there is no benchmark to run" >&2; \
		exit 1; \
	fi
	@bash scripts/ensure-brokers.sh
	@{ $(PY) -c "import faststream" && test -x $(VENV)/bin/py-spy; } 2>/dev/null || \
		$(VENV)/bin/pip install -q -e '.[bench]'
	$(PY) -m bench
