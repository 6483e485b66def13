#!/usr/bin/env bash
# Installs the real servers the tests and the demo run, from Debian's packages, and Node.js
# for the Node.js service of tests/node_app.
# Idempotent: installs only what is missing. Nothing is started here.
# golang-github-prometheus-exporter-toolkit-dev: exporter-toolkit's source with its web/testdata
# and test tables, which tests/web/test_web_toolkit.py runs against the exporter (no Go needed).
set -euo pipefail
packages=(postgresql redis-server pgbouncer prometheus prometheus-alertmanager openssl
  golang-github-prometheus-exporter-toolkit-dev)
# Any node and npm on PATH will do (NodeSource's nodejs bundles npm, and conflicts with
# Debian's npm); otherwise Debian's.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
exec bash "$(dirname "$0")/install-debian-packages.sh" "${packages[@]}"
