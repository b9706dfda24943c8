# lakehouse — `make demo` runs the end-to-end demo, `make test` runs lint + tests.
# Both (re)build the venv when pyproject.toml or constraints.txt changed (stamp = their hash).
# `make bi` (and `make test`) build Superset's own venv, .venv-bi, from bi/superset-lock.txt
# when it is missing or the lock changed (stamp = the lock's hash).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SPEC   := $(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-16)
STAMP  := $(VENV)/.installed-$(SPEC)
DBT_SOURCES := $(shell find dbt/models dbt/seeds dbt/macros dbt/tests -type f 2>/dev/null) dbt/dbt_project.yml dbt/profiles.yml
MANIFEST := dbt/target/manifest.json
# The distilled sentiment embedding table, a function of the installed model: built once here.
EMBEDDINGS := $(VENV)/share/lakehouse/minilm_static_tokens.npy
VENV_BI  := .venv-bi
BI_SPEC  := $(shell sha1sum bi/superset-lock.txt | cut -c1-16)
BI_STAMP := $(VENV_BI)/.installed-$(BI_SPEC)

# Nothing phones home: dbt, Dagster, Great Expectations and Hugging Face stay offline.
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DAGSTER_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: setup venv venv-bi bi chromium demo test lint ui docs mlflow bench clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   end-to-end demo on the embedded defaults (broker, lake, Dagster, dbt)"
	@echo "make bi     Superset dashboards over gold on http://127.0.0.1:8088 (after make demo)"
	@echo "make test   lint + all tests (unit, integration, e2e)"
	@echo "make ui     Dagster UI + daemon on http://127.0.0.1:3000"
	@echo "make docs   dbt docs site (KPI definitions) on http://127.0.0.1:8080"
	@echo "make mlflow MLflow UI (model registry, runs) on http://127.0.0.1:5000"
	@echo "make bench  benchmarks (figures go to docs/benchmarks.md by hand)"
	@echo "make lint   ruff check + format check"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==24.3.1"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "venv ready: $(VENV) ($(SPEC))"

venv: $(STAMP) $(MANIFEST) $(EMBEDDINGS)

# dagster-dbt needs the manifest before the code location imports: build it at setup time.
$(MANIFEST): $(STAMP) $(DBT_SOURCES)
	$(BIN)/lakehouse dbt parse --quiet
	@touch $@

$(EMBEDDINGS): $(STAMP)
	rm -f $@ && $(BIN)/lakehouse sentiment prepare

demo: venv
	$(BIN)/lakehouse demo

# Superset pins conflict with the project's: its own venv, from the lock file only.
$(BI_STAMP): bi/superset-lock.txt
	@test -x $(VENV_BI)/bin/python || $(PYTHON) -m venv $(VENV_BI)
	$(VENV_BI)/bin/python -m pip install --quiet --no-deps -r bi/superset-lock.txt
	$(VENV_BI)/bin/python -m pip check
	@rm -f $(VENV_BI)/.installed-*
	@touch $@
	@echo "Superset venv ready: $(VENV_BI) ($(BI_SPEC))"

venv-bi: $(BI_STAMP)

bi: venv venv-bi
	$(BIN)/lakehouse bi up

# The BI browser test needs Debian's chromium.
chromium:
	@test -x /usr/bin/chromium || (DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers: a module (and its module-scoped fixtures) stays on one, see tests/conftest.py.
TEST_WORKERS ?= 2

# The three setups are independent downloads and installs: build them side by side.
setup:
	$(MAKE) -j3 venv venv-bi chromium

test: setup
	$(MAKE) lint
	$(BIN)/lakehouse contracts check
	$(BIN)/python -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadscope

ui: venv
	$(BIN)/lakehouse ui

docs: venv
	$(BIN)/lakehouse dbt docs generate
	@echo "dbt docs on http://127.0.0.1:8080 (Ctrl-C to stop)"
	$(BIN)/lakehouse dbt docs serve --host 127.0.0.1 --port 8080 --no-browser

mlflow: venv
	$(BIN)/lakehouse mlflow-ui

bench: venv venv-bi
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/silver_gold.py
	$(BIN)/python bench/engines.py
	$(BIN)/python bench/silver_dedup.py
	$(BIN)/python bench/fraud.py all
	$(BIN)/python bench/sentiment.py
	$(BIN)/python bench/supply_chain.py
	$(BIN)/python bench/supply_replay.py
	$(BIN)/python bench/maintenance.py
	$(BIN)/python bench/lineage.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/bi.py --home .lakehouse
	$(BIN)/python bench/scale.py --spark

clean:
	rm -rf .lakehouse dbt/target dbt/logs .pytest_cache .ruff_cache
