# Entry points. `make run` and `make test` each create their own virtual environment.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON    ?= python3.11
VENV      ?= .venv
TEST_VENV ?= .venv-test
PIP_FLAGS ?=
ARGS      ?=
PYTEST_ARGS ?=

.PHONY: help run test lint format clean

help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet $(PIP_FLAGS) -e .
	touch $@

$(TEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/python -m pip install --quiet $(PIP_FLAGS) -e '.[airflow,dev]'
	touch $@

run: $(VENV)/.installed ## Set up and run the whole pipeline on embedded defaults (SQLite, local folders)
	$(VENV)/bin/pipeline run $(ARGS)

test: $(TEST_VENV)/.installed ## Set up and run the whole test suite
	$(TEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_VENV)/.installed ## ruff check and format check
	$(TEST_VENV)/bin/ruff check .
	$(TEST_VENV)/bin/ruff format --check .

format: $(TEST_VENV)/.installed ## Apply ruff fixes and formatting
	$(TEST_VENV)/bin/ruff check --fix .
	$(TEST_VENV)/bin/ruff format .

clean: ## Remove virtual environments and caches (not your pipeline home)
	rm -rf $(VENV) $(TEST_VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
