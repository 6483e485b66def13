# The two commands of the README: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install servers peers lint typecheck test demo docs alerts dashboards previews chart-assets bench bench-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

servers:
	bash scripts/install-servers.sh

# The peer exporters the benchmark compares with (tests/test_bench.py runs them too).
peers:
	PYTHON=$(PYTHON) bash bench/install-peers.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: install servers peers lint typecheck
	$(PY) -m pytest

demo: install servers
	$(PY) -m scripts.demo

# Side by side with postgres_exporter, pgbouncer_exporter, redis_exporter and node_exporter
# (2-3 minutes); results in bench/results/compare.{md,json}.
bench: install servers peers
	BENCH_COMMAND='make bench' $(PY) -m bench.run

# 100, 500 and 1000 PostgreSQL targets (about 4 minutes); bench/results/scale.{md,json,png}.
bench-scale: install servers
	BENCH_COMMAND='make bench-scale' $(PY) -m bench.run --scale

docs: install
	$(PY) -m resilience_exporter.metricsdoc > docs/metrics.md

# Renders alerts/*.rules.yml from alerts/templates and alerts/thresholds.yml and copies them
# into the Helm chart.
alerts: install
	$(PY) -m alerts.generate
	$(PY) -m scripts.sync_chart_assets

# Renders grafana/dashboards/*.json with grafana/generate.py (thresholds from
# alerts/thresholds.yml) and copies them into the Helm chart.
dashboards: install
	$(PY) -m grafana.generate
	$(PY) -m scripts.sync_chart_assets

# Renders grafana/previews/*.png from a live stack (PostgreSQL, an application, the exporter,
# Prometheus): runs the end-to-end dashboard test with previews enabled.
previews: install servers
	RESILIENCE_DASHBOARD_PREVIEWS=grafana/previews $(PY) -m pytest -q tests/test_dashboards_e2e.py

# Copies alerts/*.rules.yml and grafana/dashboards/*.json into the Helm chart (Helm cannot read
# outside the chart directory); tests/test_helm.py fails when the copies drift.
chart-assets: install
	$(PY) -m scripts.sync_chart_assets

clean:
	rm -rf $(VENV) .venv-peers .pytest_cache .mypy_cache .ruff_cache .demo
