# The two commands of the README. Each sets up everything it needs on a fresh
# machine: a virtualenv in .venv with the package and its test tools, the
# browser client's bundle (npm + esbuild), and for the tests Debian's Chromium.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CLIENT_BUNDLE := client/dist/app.js
CLIENT_SOURCES := $(shell find client/src -name '*.js' 2>/dev/null) client/index.html \
	client/style.css client/build.mjs client/package.json client/package-lock.json

.PHONY: run test lint client test-deps

run: $(INSTALLED) $(CLIENT_BUNDLE)
	$(VENV)/bin/sfu --config config.example.toml

test: $(INSTALLED) $(CLIENT_BUNDLE) test-deps lint
	$(PY) -m pytest

lint: $(INSTALLED)
	$(PY) -m ruff check sfu sfu_bench tests
	$(PY) -m ruff format --check sfu sfu_bench tests
	$(PY) -m mypy sfu sfu_bench tests

client: $(CLIENT_BUNDLE)

test-deps:
	VENV=$(VENV) scripts/ensure-test-deps

NATIVE_SOURCES := $(wildcard sfu/media/native/*.c sfu/media/native/*.h) sfu/media/_sockaddr.h

$(INSTALLED): pyproject.toml setup.py $(NATIVE_SOURCES) sfu_bench/_counter.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $@

# Rebuilt when missing or older than any client source.
$(CLIENT_BUNDLE): $(CLIENT_SOURCES)
	cd client && npm ci --no-audit --no-fund --loglevel=error && npm run build
	touch $@
