# The two commands: `make run` sets everything up and runs the pipeline on the demo
# cohort; `make test` sets everything up and runs the tests. Both create .venv if absent.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg

.PHONY: run test test-fast serve venv clean

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing dependencies into $(VENV) (pinned by requirements.lock)"
	@$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]' 2>&1 \
		| { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	@touch $@

venv: $(VENV)/.installed

## run: simulate the demo cohort into data/raw (unless present), then `dvc repro`.
## A new MLflow store (a fresh clone) gets every stage run, so that each is logged there:
## stages whose outputs live in git (the baselines' reports, the results page) would
## otherwise be found up to date and leave no run behind.
run: venv
	@if [ -e mlflow.db ]; then force=; else force=--force; echo "new MLflow store: every stage will run"; fi; \
	set -x; lmt-stereotype simulate && dvc repro $$force
	@dvc status --quiet && echo "dvc status: clean. Explore runs with: $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"

## test: lint, then the test suite, one test file per core at a time (module fixtures built once)
test: venv
	ruff check src tests
	ruff format --check src tests
	pytest -n auto --dist loadfile

## test-fast: the one-minute loop: the tests not marked slow (no CLI training, servers, browser or hypothesis)
test-fast: venv
	pytest -m "not slow" -n auto --dist loadfile

## serve: a registered model over HTTP on 127.0.0.1:PORT (MODEL: default the target's champion), against
## the project's tracking store; mlflow's server starts `uvicorn` by name, found on this PATH (the venv's bin)
PORT ?= 5001
serve: venv
	@set -- $$(python -c 'from lmt_stereotype.config import load_params; from lmt_stereotype.tracking import \
	tracking_uri; p = load_params("params.yaml"); print(tracking_uri(p.mlflow), p.registry_of_target.model_name)'); \
	set -x; MLFLOW_TRACKING_URI=$$1 exec mlflow models serve -m "$(or $(MODEL),models:/$$2@champion)" \
		--env-manager local -h 127.0.0.1 -p $(PORT)

clean:
	rm -rf $(VENV) .pytest_cache
