# The customer performance pipeline: two commands on a fresh machine.
#   make run    set-up + one full run of the July 2025 demo (outputs under output/)
#   make test   set-up + the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PERIOD ?=
CONFIG ?= config/demo.yaml
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export GX_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
# The throwaway API server Prefect starts for a run without PREFECT_API_URL must answer
# within 20 s by default; on a loaded 2-vCPU box it once took longer and `make run` failed
# before any data moved (seen 2026-11-26; the benchmark already allows 600 s).
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: setup system-deps run check test test-fast lint rerun bench clean help

help:
	@echo "make run | make test | make check | make rerun RUN=<flow-run-id> | make bench SCALE=100000 | make lint"

# mysqlclient compiles against libmysqlclient/libmariadb: it needs a C compiler, the
# Python headers and pkg-config. Install them with apt when we may, else say exactly how.
system-deps:
	@missing=""; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	pkg-config --exists mysqlclient 2>/dev/null || pkg-config --exists libmariadb 2>/dev/null || missing="$$missing default-libmysqlclient-dev"; \
	$(PYTHON) -c 'import sysconfig,os,sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")) else 1)' || missing="$$missing python3-dev"; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "install them with: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) flows/main.py --config $(CONFIG) $(if $(PERIOD),--period $(PERIOD))

check: setup
	$(PY) flows/main.py --config $(CONFIG) --check $(if $(PERIOD),--period $(PERIOD))

test: setup
	$(PY) -m ruff check flows tasks blocks demo tests bench
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "unit"

lint: setup
	$(PY) -m ruff check flows tasks blocks demo tests bench

# Rerun the failed stage of run RUN (a flow run id or name) and the stages after it, in the
# same flow run: finished extracts come back Cached, finished stages are reused. A
# deployment run is rescheduled for its worker and followed to the end; a local run runs
# here. STAGE_ONLY=1 retries only the failed stage's sub-flow (the parent stays Failed).
rerun: setup
	@test -n "$(RUN)" || (echo "usage: make rerun RUN=<flow run id or name> [STAGE_ONLY=1]"; exit 2)
	$(PY) flows/rerun.py $(RUN) --wait $(if $(STAGE_ONLY),--stage-only)

bench: setup
	$(PY) -m bench.run --scale $(or $(SCALE),100000)

clean:
	rm -rf output .prefect
