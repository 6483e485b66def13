# The two commands of the README: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install servers lint typecheck test demo docs alerts clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

servers:
	bash scripts/install-servers.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: install servers lint typecheck
	$(PY) -m pytest

demo: install servers
	$(PY) scripts/demo.py

docs: install
	$(PY) -m exporter.metricsdoc > docs/metrics.md

alerts: install
	$(PY) scripts/gen_alerts.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
