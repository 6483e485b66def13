#!/usr/bin/env bash
# Installs the peer exporters `make bench` measures against. Idempotent: installs only what is
# missing. Nothing is started here; the bench runs its own instances on free loopback ports.
#   Debian: prometheus-postgres-exporter, prometheus-redis-exporter, prometheus-node-exporter.
#   PyPI:   prometheus-pgbouncer-exporter, in its own venv (.venv-peers), from bench/peers.txt
#           (locked with hashes by `make lock`). Its own pins want psycopg2 2.8.5 built from
#           source: it is installed with --no-deps, psycopg2-binary providing the same module.
#           Debian's prometheus-pgbouncer-exporter fails against PgBouncer 1.18
#           (KeyError: 'total_requests').
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-debian-packages.sh \
  prometheus-postgres-exporter prometheus-redis-exporter prometheus-node-exporter

venv=.venv-peers
stamp=$venv/.installed
if [ ! -f "$stamp" ] || [ bench/peers.txt -nt "$stamp" ]; then
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r bench/peers.txt
  touch "$stamp"
fi
