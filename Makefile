# The two commands of the README: `make demo` and `make test`. Both install what they need, from
# the lock (uv.lock, with hashes): what is installed is what the lock says, not the day's
# releases. `make lock` writes the lock after a change to pyproject.toml, `make lock-upgrade`
# moves it to the newest releases within pyproject.toml's ranges.
PYTHON ?= python3
# The two ends of the Python range (pyproject.toml's requires-python and the newest tested).
FLOOR_PYTHON ?= 3.11
LATEST_PYTHON ?= $(shell for v in 3.14 3.13 3.12; do command -v python$$v >/dev/null && python$$v -c pass 2>/dev/null && echo $$v && break; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# uv, pinned with its hashes in requirements/uv.txt, installed with pip into a venv of its own.
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
FLOOR := .venv-floor
LATEST := .venv-latest
# uv never downloads a Python here: the machine's interpreters are the ones tested.
export UV_PYTHON_DOWNLOADS := never
# The package's tests with tests/tooling/ left out (tests/conftest.py): those test the tools
# around the package (chart, rules, dashboards, bench, image), which `make test` runs with the
# lock.
PACKAGE_TESTS := --package-only

.PHONY: install uv lock lock-upgrade lock-check servers peers image-tools lint typecheck test \
	test-fast \
	test-floor test-latest image image-test demo docs alerts dashboards previews chart-assets \
	bench bench-scale clean

$(UV): requirements/uv.txt
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements/uv.txt
	touch $@

uv: $(UV)

# The package editable, its extras and the dev group, exactly as uv.lock says (--locked: a
# lock that no longer matches pyproject.toml is an error, not a silent re-resolution). The
# package itself is built with the locked hatchling, not one fetched for the build.
$(STAMP): $(UV) uv.lock pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --quiet --locked --all-extras --group dev \
		--no-install-project --python $(PYTHON)
	$(UV) pip install --quiet --python $(PY) --no-deps --no-build-isolation -e .
	touch $@

install: $(STAMP)

lock: $(UV)
	UV=$(UV) $(PYTHON) -m scripts.lock

lock-upgrade: $(UV)
	UV=$(UV) $(PYTHON) -m scripts.lock --upgrade

# uv.lock, requirements/ and bench/peers.txt against pyproject.toml.
lock-check: $(UV)
	UV=$(UV) $(PYTHON) -m scripts.lock --check

servers:
	bash scripts/install-servers.sh

# podman, runc and mmdebstrap for the image (no container registry needed).
image-tools:
	bash scripts/install-image-tools.sh

# The peer exporters the benchmark compares with (tests/tooling/test_bench.py runs them too).
peers:
	PYTHON=$(PYTHON) bash bench/install-peers.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m scripts.check_layout

typecheck: install
	$(VENV)/bin/mypy

# Everything: the lock checked, lint and types, the whole suite with the locked set, the
# package's tests with the floors (test-floor), the image.
test: install servers peers lock-check lint typecheck
	$(PY) -m pytest --ignore=tests/tooling/test_image.py
	$(MAKE) test-floor
	$(MAKE) image-test

# The inner loop: the tests that start no server, tool or exporter process (not marked slow).
test-fast: install
	$(PY) -m pytest -q --fast --ignore=tests/tooling/test_image.py

# The lowest release of every dependency pyproject.toml declares (requirements/floor.txt), on
# the oldest Python it supports: mypy on the package and the package's tests.
$(FLOOR)/.installed: $(UV) requirements/floor.txt
	rm -rf $(FLOOR)
	$(UV) venv --quiet --python $(FLOOR_PYTHON) $(FLOOR)
	$(UV) pip sync --quiet --python $(FLOOR)/bin/python --require-hashes requirements/floor.txt
	$(UV) pip install --quiet --python $(FLOOR)/bin/python --no-deps --no-build-isolation -e .
	touch $@

test-floor: $(FLOOR)/.installed servers
	$(FLOOR)/bin/mypy resilience_exporter
	$(FLOOR)/bin/python -m pytest $(PACKAGE_TESTS)

# The newest releases of everything, no lock, on the newest Python here: what a user who
# installs today gets. Not part of `make test` (it changes from day to day); run it before
# `make lock-upgrade` and when a dependency releases.
test-latest: $(UV) servers peers
	@test -n "$(LATEST_PYTHON)" || { echo "test-latest: no python3.12 or newer on PATH;" \
		"say which: make test-latest LATEST_PYTHON=/path/to/python3.13" >&2; exit 2; }
	rm -rf $(LATEST)
	$(UV) venv --quiet --python $(LATEST_PYTHON) $(LATEST)
	$(UV) pip install --quiet --python $(LATEST)/bin/python --upgrade --refresh \
		-e ".[$$($(PYTHON) -c 'import tomllib; print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]))')]" \
		--group dev
	$(LATEST)/bin/python -c 'import sys; print("test-latest: Python", sys.version.split()[0])'
	$(UV) pip list --python $(LATEST)/bin/python
	$(LATEST)/bin/mypy
	$(LATEST)/bin/python -m pytest --ignore=tests/tooling/test_image.py

# The image from the Dockerfile, built with podman on a Debian base made by mmdebstrap, saved
# as dist/resilience-exporter-<version>.oci.tar (`podman load -i` it, or push it with skopeo).
image: install image-tools
	$(PY) -m scripts.image

# Builds the image and smoke-tests it: non-root, read-only root filesystem, a config and a web
# config mounted, /metrics and /-/ready answered (a few minutes: the base is made afresh).
image-test: install image-tools
	$(PY) -m pytest -q tests/tooling/test_image.py

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
	RESILIENCE_DASHBOARD_PREVIEWS=grafana/previews $(PY) -m pytest -q tests/tooling/test_dashboards_e2e.py

# Copies alerts/*.rules.yml and grafana/dashboards/*.json into the Helm chart (Helm cannot read
# outside the chart directory); tests/tooling/test_helm.py fails when the copies drift.
chart-assets: install
	$(PY) -m scripts.sync_chart_assets

clean:
	rm -rf $(VENV) $(TOOLS) $(FLOOR) $(LATEST) .venv-peers .pytest_cache .mypy_cache \
		.ruff_cache .demo
