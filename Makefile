# The two commands of the README: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install servers peers image-tools lint typecheck test image image-test demo docs alerts dashboards previews chart-assets bench bench-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

servers:
	bash scripts/install-servers.sh

# podman, runc and mmdebstrap for the image (no container registry needed).
image-tools:
	bash scripts/install-image-tools.sh

# The peer exporters the benchmark compares with (tests/test_bench.py runs them too).
peers:
	PYTHON=$(PYTHON) bash bench/install-peers.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: install servers peers lint typecheck
	$(PY) -m pytest --ignore=tests/test_image.py
	$(MAKE) image-test

# The image from the Dockerfile, built with podman on a Debian base made by mmdebstrap, saved
# as dist/resilience-exporter-<version>.oci.tar (`podman load -i` it, or push it with skopeo).
image: install image-tools
	$(PY) -m scripts.image

# Builds the image and smoke-tests it: non-root, read-only root filesystem, a config and a web
# config mounted, /metrics and /-/ready answered (a few minutes: the base is made afresh).
image-test: install image-tools
	$(PY) -m pytest -q tests/test_image.py

demo: install servers
	$(PY) -m scripts.demo

# Side by side with postgres_exporter, pgbouncer_exporter, redis_exporter and node_exporter
# (2-3 minutes); results in bench/results/compare.{md,json}.
bench: install servers peers
	BENCH_COMMAND='make bench' $(PY) -m bench.run

# Fleet mode, scraped by a real Prometheus: 2,000 targets (Redis and PostgreSQL) every 15 s on
# one exporter pinned to one core; then 10,000 over 5 shards, every 60 s (at 15 s the servers,
# the five shards and Prometheus need more than this 2-core machine); then the PostgreSQL-only
# steps (100, 500, 1000 targets). About 30 minutes; bench/results/fleet-*.{md,json,png} and
# bench/results/scale.{md,json,png}.
bench-scale: install servers
	BENCH_COMMAND='make bench-scale (python -m bench.run --fleet)' $(PY) -m bench.run --fleet
	BENCH_COMMAND='make bench-scale (python -m bench.run --fleet --fleet-targets 10000 --shards 5 --interval 60)' \
		$(PY) -m bench.run --fleet --fleet-targets 10000 --shards 5 --interval 60
	BENCH_COMMAND='make bench-scale (python -m bench.run --scale)' $(PY) -m bench.run --scale

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
