# Set-up and entry points. `make run` and `make test` are the README's quick start.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE_ARGS ?=
# Jobs call `python`, `jupytext` and `papermill`: the environment's own.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run report test test-quick lint bench archive import spot-check clean-results

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name rankcollapse --display-name rankcollapse
	touch $@

setup: $(BIN)/activate ## virtual environment with the pinned stack and the Jupyter kernel

run: setup ## the main job on config/config.yaml, then the HTML report
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake --report results/report.html $(SNAKEMAKE_ARGS)

test: setup ## the whole test suite (unit tests, lint, workflow smoke runs), one worker per core
	$(BIN)/python -m pytest -n auto --dist loadscope

test-quick: setup ## the test suite without the tests marked slow (the paper config's smoke DAG)
	$(BIN)/python -m pytest -n auto --dist loadscope -m "not slow"

archive: setup ## the results archive of the run (results/results-archive.tar; README, reviewers)
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) results/results-archive.tar

import: setup ## verify and unpack ARCHIVE=path/to/results-archive.tar; then `make run`
	$(if $(ARCHIVE),,$(error name the archive: make import ARCHIVE=path/to/results-archive.tar))
	$(BIN)/python -m rankcollapse import-archive $(ARCHIVE) --dest .

spot-check: setup ## re-train RUNS runs of an imported archive (drawn with SEED) and compare
	$(BIN)/python -m rankcollapse spot-check --runs $(or $(RUNS),1) --seed $(or $(SEED),0) --cores $(CORES) $(foreach r,$(RUN),--run $(r))

bench: setup ## performance benchmark with ratios (not part of the tests; about 1.5 hours)
	$(BIN)/python benchmarks/benchmark.py $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint
