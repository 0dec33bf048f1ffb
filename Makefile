# PredictFlow: `make repro` builds everything from a fresh clone; `make test` checks it.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
# Stage commands call `python`: the venv's must come first even without `source .venv/bin/activate`.
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install activate-hook repro test test-fast bench ui server lint format lock clean

help: ## list the targets (coloured only on a terminal)
	@if [ -t 1 ]; then on=$$'\033[36m'; off=$$'\033[0m'; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} \
		/^[a-z-]+:.*## / {printf "  %s%-10s%s %s\n", on, $$1, off, $$2}' $(MAKEFILE_LIST)

# uv installs the pinned set about 4x faster than pip (docs/benchmarks.md, "faster installs");
# pip only bootstraps uv itself, pinned by constraints.txt like everything else.
$(INSTALLED): pyproject.toml constraints.txt
	@test -x "$(BIN)"/python || "$(PYTHON)" -m venv $(VENV)
	"$(BIN)"/python -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	"$(BIN)"/uv pip install --quiet --python "$(BIN)"/python --compile-bytecode \
		-c constraints.txt -e '.[dev]'
	@$(MAKE) --no-print-directory activate-hook
	@touch $@

# `source .venv/bin/activate` also points MLflow at the project's store (scripts/activate-mlflow.sh);
# `deactivate` unsets only what the hook set.
activate-hook:
	@grep -q _PREDICTFLOW_STORE "$(BIN)"/activate || { \
		sed -i 's/^deactivate () {$$/&\n    if [ -n "$${_PREDICTFLOW_STORE:-}" ]; then unset MLFLOW_TRACKING_URI MLFLOW_BACKEND_STORE_URI _PREDICTFLOW_STORE; fi/' "$(BIN)"/activate; \
		cat scripts/activate-mlflow.sh >> "$(BIN)"/activate; }

# `dvc plots show` renders offline: .dvc/config names this template (plots.html_template), which
# inlines Vega, Vega-Lite and Vega-Embed from the npm packages pinned by package-lock.json instead of
# DVC's default page, which loads them from a CDN (a blank page without internet access).
PLOTS_TEMPLATE := .dvc/plots.html
PLOTS_JS := $(addprefix node_modules/,vega/build/vega.min.js vega-lite/build/vega-lite.min.js \
	vega-embed/build/vega-embed.min.js)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

$(PLOTS_TEMPLATE): node_modules/.package-lock.json
	@{ printf '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n{refresh_tag}\n'; \
	  printf '<title>DVC Plot</title>\n<style>table { border-spacing: 15px; }</style>\n'; \
	  for js in $(PLOTS_JS); do printf '<script>\n'; cat $$js; printf '\n</script>\n'; done; \
	  printf '</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'; } > $@.tmp && mv $@.tmp $@

install: $(INSTALLED) activate-hook $(PLOTS_TEMPLATE) ## create .venv and install the project (pinned by constraints.txt)

# DVC sees no change when the MLflow store was deleted or swapped: if the store lacks the model
# the receipt names (exit 10), train logs it again and register registers it (same model bytes,
# so dvc.lock does not change).
repro: $(INSTALLED) activate-hook $(PLOTS_TEMPLATE) ## fetch or bootstrap the data, run the whole pipeline, register the model
	"$(BIN)"/predictflow data ensure
	"$(BIN)"/dvc repro
	@"$(BIN)"/python -m predictflow.ops.doctor || { status=$$?; [ $$status -eq 10 ] || exit $$status; \
		echo "the tracking store lacks this workspace's model: logging and registering it again"; \
		"$(BIN)"/dvc repro --force --single-item train evaluate register; }
	@echo "Done. Runs: make ui | Model lineage: predictflow lineage | Metrics: dvc metrics show"

# One pytest-xdist worker per core, each taking whole test files (their module fixtures build a
# repo or a server once), handed out in the order tests/conftest.py sorts them (longest first,
# not xdist's most-tests-first); TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= $(shell nproc)
test: $(INSTALLED) $(PLOTS_TEMPLATE) ## run the whole test suite (slow end-to-end tests included)
	"$(BIN)"/lint-imports --no-cache --no-logo
	"$(BIN)"/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# lint-imports: the import layers and no cycles ([tool.importlinter] in pyproject.toml)
test-fast: $(INSTALLED) $(PLOTS_TEMPLATE) ## import layers, then unit tests only: in process, no built pipeline, server or browser
	"$(BIN)"/lint-imports --no-cache --no-logo
	"$(BIN)"/pytest -m unit

bench: $(INSTALLED) ## ours vs the one-script peer and bare baselines (7k and 1M rows) -> docs/benchmarks.md (15-25 min)
	"$(BIN)"/python -m benchmarks.run $(BENCH_ARGS)

# One worker is plenty for one person and starts 4x lighter. MLflow imports Starlette's WSGI shim,
# which warns once per worker about a deprecation only MLflow can act on. `predictflow-ui` is
# MLflow's own app with browser defaults that open experiments on training runs (docs/ui.md).
ui: $(INSTALLED) ## MLflow UI on http://127.0.0.1:5000 ($PORT) over the project's store
	@case "$${MLFLOW_TRACKING_URI:-}" in http*) \
		echo "MLFLOW_TRACKING_URI is a server: its UI is $$MLFLOW_TRACKING_URI"; exit 0;; esac; \
	mkdir -p mlflow_data; \
	PYTHONWARNINGS='ignore:starlette.middleware.wsgi is deprecated' \
	"$(BIN)"/mlflow ui --app-name predictflow-ui --host 127.0.0.1 --port $${PORT:-5000} --workers 1 \
		--backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow_data/mlflow.db}"

server: $(INSTALLED) ## team MLflow server on 127.0.0.1:$PORT (5001), PostgreSQL store (see docs/team-server.md)
	"$(BIN)"/python scripts/mlflow_server.py

lint: $(INSTALLED) ## ruff: lint and format check
	"$(BIN)"/ruff check .
	"$(BIN)"/ruff format --check .

format: $(INSTALLED) ## ruff: fix what can be fixed, format
	"$(BIN)"/ruff check --fix .
	"$(BIN)"/ruff format .

# uv keeps every pin already in constraints.txt unless `make lock UPGRADE=--upgrade`. setuptools is
# left to the venv (zc.lockfile asks for it; pinning it would replace the venv's own copy).
lock: $(INSTALLED) ## resolve pyproject.toml's dependencies into constraints.txt (UPGRADE=--upgrade)
	"$(BIN)"/uv pip compile pyproject.toml --extra dev --python-version 3.11 --quiet \
		--no-emit-package setuptools --custom-compile-command 'make lock' $(UPGRADE) \
		-o constraints.txt

clean: ## remove caches (keeps .venv, data, the MLflow store)
	rm -rf .pytest_cache .ruff_cache build src/*.egg-info
