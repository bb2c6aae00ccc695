# The two commands of the README. Each sets up everything it needs on a fresh
# machine (a virtualenv in .venv with the package and its test tools).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test lint

run: $(INSTALLED)
	$(VENV)/bin/sfu --config config.example.toml

test: $(INSTALLED) lint
	$(PY) -m pytest

lint: $(INSTALLED)
	$(PY) -m ruff check sfu tests
	$(PY) -m mypy sfu

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@
