#!/usr/bin/env bash
# Installs what `make image` and `make image-test` need from Debian's packages: podman with
# runc (crun fails on these machines), and mmdebstrap for the base image (no container
# registry is reachable). Idempotent: installs only what is missing.
set -euo pipefail
exec bash "$(dirname "$0")/install-debian-packages.sh" podman runc buildah mmdebstrap uidmap
