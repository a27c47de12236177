# Set-up and everyday commands; each creates or updates .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The JupyterLab extension's sources: a change rebuilds it (the build hook runs npm) on the next install.
LABEXT     := labextension
LABEXT_SRC := $(shell find $(LABEXT)/src $(LABEXT)/style $(LABEXT)/schema -type f 2>/dev/null) \
              $(LABEXT)/package.json $(LABEXT)/package-lock.json
CHROMIUM   ?= /usr/bin/chromium
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test lint demo lab bench clean chromium

$(STAMP): pyproject.toml $(LABEXT_SRC)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if command -v npm >/dev/null; then rm -rf odsc_magics/labextension; \
	else echo "npm not found: the install reuses odsc_magics/labextension/ (building it needs Node.js >= 20.19)"; fi
	$(BIN)/python -m pip install -q -e '.[test,e2e,lint,lab,bench]'
	touch $(STAMP)

$(LABEXT)/node_modules/.package-lock.json: $(LABEXT)/package-lock.json
	cd $(LABEXT) && npm ci --no-audit --no-fund

# Debian's Chromium for the browser tests (never a downloaded browser).
chromium:
	@test -x $(CHROMIUM) || { echo "Installing Chromium with apt"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(BIN)/ruff check .

# jest (TypeScript), then the whole pytest suite: handlers, the wheel without Node, the browser suite.
test: lint chromium $(LABEXT)/node_modules/.package-lock.json
	cd $(LABEXT) && npx jest
	ODSC_MAGICS_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m odsc_magics.demo

lab: $(STAMP)
	$(BIN)/odsc-magics lab

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache notebooks/executed
