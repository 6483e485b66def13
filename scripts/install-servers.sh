#!/usr/bin/env bash
# Installs the real servers the tests and the demo run, from Debian's packages.
# Idempotent: installs only what is missing. Nothing is started here.
# golang-github-prometheus-exporter-toolkit-dev: exporter-toolkit's source with its web/testdata
# and test tables, which tests/test_web_toolkit.py runs against the exporter (no Go needed).
set -euo pipefail
exec bash "$(dirname "$0")/install-debian-packages.sh" \
  postgresql redis-server pgbouncer prometheus prometheus-alertmanager openssl \
  golang-github-prometheus-exporter-toolkit-dev
