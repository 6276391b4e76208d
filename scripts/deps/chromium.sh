#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the hub dashboard's browser test.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"
apt_install chromium.sh chromium fonts-dejavu-core
