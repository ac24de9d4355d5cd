# Two commands for a fresh machine: `make run` (the whole asset graph on the embedded default)
# and `make test`. Both create .venv and install the pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-fast ui bench lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[train,dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/finai-pipeline

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The developer's loop (under 5 minutes): everything but the suites marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

ui: $(STAMP)
	FINAI_AUTOMATION=on DAGSTER_HOME=$$($(BIN)/python -m finai_assets.instance) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: $(STAMP)
	$(BIN)/python -m benchmarks.generator
	$(BIN)/python -m benchmarks.teacher
	$(BIN)/python -m benchmarks.distill
	$(BIN)/python -m benchmarks.tree_scoring
	$(BIN)/python -m benchmarks.serving
	$(BIN)/python -m benchmarks.monitoring
	$(BIN)/python -m benchmarks.quality

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf .finai
