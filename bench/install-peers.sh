#!/usr/bin/env bash
# Installs the peer exporters `make bench` measures against. Idempotent: installs only what is
# missing. Nothing is started here; the bench runs its own instances on free loopback ports.
#   Debian: prometheus-postgres-exporter, prometheus-redis-exporter, prometheus-node-exporter.
#   PyPI:   prometheus-pgbouncer-exporter, in its own venv (.venv-peers): it pins
#           prometheus_client 0.8.0 and psycopg2 2.8.5 (built from source; psycopg2-binary
#           provides the same module). Debian's prometheus-pgbouncer-exporter fails against
#           PgBouncer 1.18 (KeyError: 'total_requests').
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-debian-packages.sh \
  prometheus-postgres-exporter prometheus-redis-exporter prometheus-node-exporter

venv=.venv-peers
if [ ! -x "$venv/bin/pgbouncer-exporter" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps prometheus-pgbouncer-exporter==2.1.2
  "$venv/bin/pip" install --quiet --disable-pip-version-check psycopg2-binary \
    prometheus-client==0.8.0 python-json-logger==0.1.11 PyYAML
fi
