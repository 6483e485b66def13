#!/usr/bin/env bash
# Installs the real servers the tests and the demo run, from Debian's packages.
# Idempotent: installs only what is missing. Nothing is started here.
set -euo pipefail

# golang-github-prometheus-exporter-toolkit-dev: exporter-toolkit's source with its web/testdata
# and test tables, which tests/test_web_toolkit.py runs against the exporter (no Go needed).
packages=(postgresql redis-server pgbouncer prometheus prometheus-alertmanager openssl
  golang-github-prometheus-exporter-toolkit-dev)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages' maintainer scripts may start the services where an init system runs;
# the project starts its own instances on free ports, so stop any that came up.
for svc in postgresql redis-server pgbouncer prometheus prometheus-alertmanager; do
  service "$svc" stop >/dev/null 2>&1 || true
done
