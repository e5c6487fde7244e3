# meshkit — one command to bring the stack up, one to test it.
# Every target bootstraps .venv first, so a fresh clone needs nothing but Python >= 3.11.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint unit bench chaos clean help

help:
	@echo "make up     - create .venv if missing, install meshkit, start the whole stack (Ctrl-C stops it)"
	@echo "make test   - the same bootstrap, then lint (ruff + import-linter) and the whole test suite"
	@echo "make bench  - benchmarks side by side with their peers (see docs/benchmarks.md)"
	@echo "make chaos  - long fault-injection runs (not part of make test)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

up: $(STAMP)
	$(BIN)/meshkit up

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos

clean:
	rm -rf $(VENV) .meshkit build src/*.egg-info
