#!/usr/bin/env bash
# Installs what `make image` and `make image-test` need from Debian's packages: podman with
# runc (crun fails on these machines), and mmdebstrap for the base image (no container
# registry is reachable). Idempotent: installs only what is missing.
set -euo pipefail

packages=(podman runc buildah mmdebstrap uidmap)
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
