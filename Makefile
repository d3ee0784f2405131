# The two README commands: `make run` (install, prepare the small models, start the stack)
# and `make test` (install with test tools, prepare, run the whole suite).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip --disable-pip-version-check
# torch 2.13.0 CPU build: a local wheel where pip's config finds one (--no-index), else PyTorch's CPU index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
STAMPS := $(VENV)/.stamps
PYTEST_ARGS ?=
# Two pytest-xdist workers: most tests wait on a service or use one core (tests/conftest.py groups
# them so every vLLM server starts once). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

.PHONY: help run test install install-dev browser web prepare bench-gateway bench clean

help:
	@echo "make run    install, prepare the models, start the whole stack (http://127.0.0.1:8000)"
	@echo "make test   install with test tools and run the whole suite"

run: prepare web
	$(BIN)/openchatkit run

test: install-dev browser web prepare
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

# Pinned, resolved sets installed with --no-deps (see the header of requirements/runtime.lock).
$(STAMPS)/runtime: pyproject.toml requirements/runtime.lock | $(PY)
	$(PIP) install --no-deps --no-index "torch==2.13.0" 2>/dev/null \
	  || $(PIP) install --no-deps "torch==2.13.0" --index-url $(TORCH_INDEX)
	$(PIP) install --no-deps -r requirements/runtime.lock
	$(PIP) install --no-deps -e .
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/dev: $(STAMPS)/runtime requirements/dev.lock
	$(PIP) install --no-deps -r requirements/dev.lock
	@mkdir -p $(STAMPS) && touch $@

# The browser tests drive Debian's chromium (Playwright's own browser download is unreachable).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends chromium \
	  || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends chromium; }; }

# The chat page's browser libraries (marked, DOMPurify, highlight.js; axe-core for the tests),
# installed from npm as locked in gateway/web/package-lock.json; the gateway serves them.
WEB := gateway/web
$(WEB)/node_modules/.package-lock.json: $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18 or newer) is needed for the chat page's libraries"; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund

web: $(WEB)/node_modules/.package-lock.json

install: $(STAMPS)/runtime

install-dev: $(STAMPS)/dev

# Idempotent: each step is a no-op when its output is current.
prepare: install
	$(BIN)/openchatkit prepare-models
	$(BIN)/openchatkit finetune moderation

bench-gateway: install
	$(BIN)/openchatkit bench gateway

# Every benchmark into benchmarks/results/<stamp>/ and benchmarks/README.md regenerated.
bench: install
	$(BIN)/openchatkit bench all

clean:
	rm -rf $(VENV) .pytest_cache
