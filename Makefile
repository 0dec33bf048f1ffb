# PredictFlow: `make repro` builds everything from a fresh clone; `make test` checks it.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
# Stage commands call `python`: the venv's must come first even without `source .venv/bin/activate`.
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install repro test test-fast bench ui server lint format lock clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# uv installs the pinned set about 4x faster than pip (docs/benchmarks.md, "faster installs");
# pip only bootstraps uv itself, pinned by constraints.txt like everything else.
$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
		-c constraints.txt -e '.[dev]'
	@touch $@

install: $(INSTALLED) ## create .venv and install the project (pinned by constraints.txt)

# DVC sees no change when the MLflow store was deleted or swapped: if the store lacks the model
# the receipt names (exit 10), train logs it again and register registers it (same model bytes,
# so dvc.lock does not change).
repro: $(INSTALLED) ## fetch or bootstrap the data, run the whole pipeline, register the model
	$(BIN)/predictflow data ensure
	$(BIN)/dvc repro
	@$(BIN)/python -m predictflow.doctor || { status=$$?; [ $$status -eq 10 ] || exit $$status; \
		echo "the tracking store lacks this workspace's model: logging and registering it again"; \
		$(BIN)/dvc repro --force --single-item train evaluate register; }
	@echo "Done. Runs: make ui | Model lineage: predictflow lineage | Metrics: dvc metrics show"

test: $(INSTALLED) ## run the whole test suite (slow end-to-end tests included)
	$(BIN)/pytest

test-fast: $(INSTALLED) ## unit and contract tests only
	$(BIN)/pytest -m "not slow"

bench: $(INSTALLED) ## pipeline vs bare baselines at 7k/100k/1M rows -> docs/benchmarks.md (8-16 min)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

ui: $(INSTALLED) ## MLflow UI on http://127.0.0.1:5000 over the project's store
	@case "$${MLFLOW_TRACKING_URI:-}" in http*) \
		echo "MLFLOW_TRACKING_URI is a server: its UI is $$MLFLOW_TRACKING_URI"; exit 0;; esac; \
	mkdir -p mlflow_data; \
	$(BIN)/mlflow ui --host 127.0.0.1 --port $${PORT:-5000} \
		--backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow_data/mlflow.db}

server: $(INSTALLED) ## team MLflow server on 127.0.0.1:$PORT (5001), PostgreSQL store (see README)
	$(BIN)/python scripts/mlflow_server.py

lint: $(INSTALLED) ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED) ## ruff: fix what can be fixed, format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: ## re-resolve dependencies and rewrite constraints.txt
	rm -rf /tmp/predictflow-lock && $(PYTHON) -m venv /tmp/predictflow-lock
	/tmp/predictflow-lock/bin/pip install --quiet -e '.[dev]'
	{ head -2 constraints.txt; /tmp/predictflow-lock/bin/pip freeze --exclude-editable | grep -v '^predictflow'; } > constraints.new
	mv constraints.new constraints.txt

clean: ## remove caches (keeps .venv, data, the MLflow store)
	rm -rf .pytest_cache .ruff_cache build src/*.egg-info
