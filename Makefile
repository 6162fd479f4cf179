# Set-up on a fresh machine needs only Python 3.11 and pip.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint check bench study docs clean

# The package alone (demo), and the package with the test toolchain (lint, test, bench, study).
$(BIN)/wis-monitor: pyproject.toml
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: $(BIN)/wis-monitor
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/wis-monitor            ## run the daemon on simulated venues (Ctrl-C to stop)
	$(BIN)/wis-monitor demo $(ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check wis_monitor tests
	$(BIN)/mypy

test: lint                           ## ruff, mypy and the whole test suite (two workers)
	$(BIN)/pytest -n 2

bench: $(VENV)/.test-installed            ## benchmarks against their floors (not part of test)
	$(BIN)/python tests/benchmarks/run.py $(ARGS)

study: $(VENV)/.test-installed            ## the signal study on ../shared/data/books-full: docs/signal-study.md
	$(BIN)/python tests/study/run.py $(ARGS)

docs: $(BIN)/wis-monitor             ## regenerate docs/config.md from the config models
	$(BIN)/python -m wis_monitor.tools.configdoc > docs/config.md

clean:
	rm -rf $(VENV) var build *.egg-info
