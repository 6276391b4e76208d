#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the hub dashboard's browser test.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
# Other jobs may hold the apt/dpkg locks: wait for them instead of failing.
apt() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
echo "chromium.sh: installing chromium" >&2
apt update -qq
apt install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
