# The two commands at the top of the README. Each creates .venv with the system python3
# when it is missing, installs the project into it, and runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SPARK_STAMP := $(VENV)/.spark-stamp
BROWSER_STAMP := $(VENV)/.browser-stamp
# Apache Superset (`signalbox bi`) in a virtualenv of its own: it cannot share Dagster's pins
BI_VENV := .venv-bi
BI_STAMP := $(BI_VENV)/.installed-stamp
BENCH ?=

.PHONY: demo demo-bi bi-install bi-constraints test test-fast drill bench lint format docs wheel constraints clean

$(STAMP): pyproject.toml plugins/dbt-chdb/pyproject.toml plugins/dbt-chdb/dbt/adapters/chdb/__init__.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,test]'
	# dbt finds adapters in the dbt.adapters namespace: install the chDB one non-editable
	$(BIN)/python -m pip install --quiet ./plugins/dbt-chdb
	touch $(STAMP)

# the optional Spark engine of the tickets recompute: its tests run in `make test`
$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[spark]'
	touch $(SPARK_STAMP)

# headless Chromium for the browser tests (tests/browser): Debian's package, installed as
# root when missing; otherwise those tests say how and are skipped (CI=true: they fail)
$(BROWSER_STAMP):
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
	  echo "no chromium: the browser tests will be skipped (apt-get install chromium)"
	mkdir -p $(VENV) && touch $(BROWSER_STAMP)

demo: $(STAMP)
	$(BIN)/signalbox demo

# the demo with the dashboards: Superset beside the Dagster UI (`signalbox demo --bi`)
demo-bi: $(STAMP) $(BI_STAMP)
	$(BIN)/signalbox demo --bi

bi-install: $(BI_STAMP)

$(BI_STAMP): deploy/bi-requirements.txt deploy/bi-constraints.txt
	test -x $(BI_VENV)/bin/python || $(PYTHON) -m venv $(BI_VENV)
	$(BI_VENV)/bin/python -m pip install --quiet -r deploy/bi-requirements.txt -c deploy/bi-constraints.txt
	touch $(BI_STAMP)

# deploy/bi-constraints.txt: deploy/bi-requirements.txt installed alone, frozen
bi-constraints:
	rm -rf build/bi-venv && $(PYTHON) -m venv build/bi-venv
	build/bi-venv/bin/pip install --quiet -r deploy/bi-requirements.txt
	{ sed -n '/^#/p' deploy/bi-constraints.txt; build/bi-venv/bin/pip freeze; } > deploy/bi-constraints.new
	mv deploy/bi-constraints.new deploy/bi-constraints.txt && rm -rf build/bi-venv

# two workers (one per core): most tests wait on engines, dbt and servers, not the CPU
test: $(STAMP) $(SPARK_STAMP) $(BROWSER_STAMP) $(BI_STAMP) lint
	$(BIN)/pytest -n 2 --dist loadfile

# the crash drills alone (they run in `make test` too): each domain's run killed with SIGKILL
# at chosen and random points, re-run, compared with the source's truth; prints the score
drill: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile tests/drills

# the unit tier only: no engine, no dbt, under a minute (`-m integration`, `-m e2e` the others)
test-fast: $(STAMP)
	$(BIN)/pytest -m unit -q

# The dbt SQL: sqlfluff with its dbt templater, per project (each has its .sqlfluff), on
# the profiles' offline `lint` targets: no PostgreSQL server, chDB in memory. `dbt deps`
# first links the local package dbt_project/shared (no network).
DBT_PROJECTS := dbt_project/warehouse dbt_project/activity

lint: $(STAMP)
	$(BIN)/ruff check signalbox tests benchmarks
	$(BIN)/ruff format --check signalbox tests benchmarks
	status=0; for project in $(DBT_PROJECTS); do \
	  $(BIN)/dbt deps --quiet --project-dir $$project --profiles-dir $$project || exit 1; \
	  (cd $$project && $(CURDIR)/$(BIN)/sqlfluff lint --processes 2 models tests) || status=1; \
	done; exit $$status

format: $(STAMP)
	$(BIN)/ruff check --fix signalbox tests benchmarks
	$(BIN)/ruff format signalbox tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH)

# the production artefact: the wheel with the dbt projects and prepared manifests inside
wheel: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH bash deploy/build-wheel.sh dist

# deploy/constraints.txt: the wheel installed alone into a fresh virtualenv, frozen
constraints: wheel
	rm -rf build/constraints-venv && $(PYTHON) -m venv build/constraints-venv
	build/constraints-venv/bin/pip install --quiet dist/signalbox-*.whl
	{ sed -n '/^#/p' deploy/constraints.txt; build/constraints-venv/bin/pip freeze --exclude signalbox; } > deploy/constraints.new
	mv deploy/constraints.new deploy/constraints.txt && rm -rf build/constraints-venv

docs: $(STAMP)
	$(BIN)/signalbox docs

clean:
	rm -rf $(VENV) .signalbox build dist
