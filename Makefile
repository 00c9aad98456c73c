# Both entry points bootstrap the virtual environment themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Quiet, offline-friendly Prefect defaults; the embedded server gets time to start on slow machines.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test check lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/wavecast retrain

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every tier (unit, fit, flow, server: pyproject.toml's markers); minutes, it starts real servers.
# TEST_WORKERS pytest-xdist processes share the work (most of it waits on servers and
# subprocesses, so more than the cores pay); TEST_WORKERS=0 runs it all in this process.
# The slowest tests are listed last: where the suite's minutes go.
TEST_WORKERS ?= 3
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# The fast loop: lint, then the unit tier only (in-process: no server, subprocess or training).
check: lint
	$(BIN)/python -m pytest -m unit -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# A local Prefect server + process worker running prefect.yaml's deployments; state, logs and
# pids in .serve/ (README: "Run on a Prefect server"). serve-stop needs no venv install.
SERVE_PORT ?= 4200
.PHONY: serve serve-stop

serve: $(STAMP)
	BIN=$(BIN) SERVE_PORT=$(SERVE_PORT) flows/serve.sh start

serve-stop:
	BIN=$(BIN) SERVE_PORT=$(SERVE_PORT) flows/serve.sh stop
