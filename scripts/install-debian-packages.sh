#!/usr/bin/env bash
# Installs the Debian packages given as arguments that are missing; nothing when all are there.
# Where an init system runs, packages start their services: those are stopped again (the
# project runs its own instances on free loopback ports). Used by `make servers`,
# `make image-tools` and `make peers`.
#   bash scripts/install-debian-packages.sh PACKAGE...
set -euo pipefail

missing=()
for pkg in "$@"; do
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
for svc in "${missing[@]}"; do
  service "$svc" stop >/dev/null 2>&1 || true
done
