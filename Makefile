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

.PHONY: test lint demo lab bench clean chromium java spark-test

# predict_spark's tests run in one virtualenv per PySpark line: 3.5 (OCI Data Flow's runtime) and the newest 4.x.
# PySpark 3.5 predates numpy 2 and pandas 3, so its environment pins the last releases it works with; PySpark 4
# warns that it does not fully support pandas 3 yet.
SPARK_ENVS  := .venv-spark35 .venv-spark4
SPARK_PINS_.venv-spark35 := 'pyspark[sql]==3.5.*' 'numpy<2' 'pandas>=2.0,<2.3' 'pyarrow>=11,<18'
SPARK_PINS_.venv-spark4  := 'pyspark[sql]>=4,<5' 'pandas>=2.2,<3'
# benchmarks/spark_throughput.py measures predict_spark beside Ray Data's and LangChain's batch clients.
SPARK_PINS_.venv-spark-bench := $(SPARK_PINS_.venv-spark4) 'ray[data]' 'langchain-openai'

$(STAMP): pyproject.toml $(LABEXT_SRC)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@if command -v npm >/dev/null; then rm -rf odsc_magics/labextension; \
	else echo "npm not found: the install reuses odsc_magics/labextension/ (building it needs Node.js >= 20.19)"; fi
	$(BIN)/python -m pip install -q -e '.[test,e2e,lint,lab,bench]'
	touch $(STAMP)

# No build hooks: these environments never need the JupyterLab extension (nor Node).
.venv-spark%/.installed-stamp: pyproject.toml Makefile
	test -x .venv-spark$*/bin/python || $(PYTHON) -m venv .venv-spark$*
	.venv-spark$*/bin/python -m pip install -q --upgrade pip
	HATCH_BUILD_NO_HOOKS=true .venv-spark$*/bin/python -m pip install -q -e '.[test,spark-test]' $(SPARK_PINS_.venv-spark$*)
	touch $@

# Spark runs on a JVM: Debian's headless JRE 17 (Data Flow's Java) where none is installed.
java:
	@command -v java >/dev/null || { echo "Installing a Java 17 runtime with apt"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; }

# tests/spark in each PySpark environment (the main environment has no PySpark and does not collect them).
spark-test: java $(addsuffix /.installed-stamp,$(SPARK_ENVS))
	for env in $(SPARK_ENVS); do echo "== tests/spark in $$env"; \
	  $$env/bin/python -m pytest -x tests/spark || exit 1; done

$(LABEXT)/node_modules/.package-lock.json: $(LABEXT)/package-lock.json
	cd $(LABEXT) && npm ci --no-audit --no-fund

# Debian's Chromium for the browser tests (never a downloaded browser).
chromium:
	@test -x $(CHROMIUM) || { echo "Installing Chromium with apt"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(BIN)/ruff check .

# jest (TypeScript), then the whole pytest suite: handlers, the wheel without Node, the browser suite.
test: lint chromium $(LABEXT)/node_modules/.package-lock.json spark-test
	cd $(LABEXT) && npx jest
	ODSC_MAGICS_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m odsc_magics.demo

lab: $(STAMP)
	$(BIN)/odsc-magics lab

bench: $(STAMP) .venv-spark-bench/.installed-stamp
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(SPARK_ENVS) .venv-spark-bench build dist .pytest_cache .ruff_cache notebooks/executed
