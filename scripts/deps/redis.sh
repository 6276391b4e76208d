#!/usr/bin/env bash
# Installs redis-server and redis-tools (redis-cli), which the hub's Redis engine tests start
# as their own processes in a temp dir (one server on a unix socket, or a three-master Redis
# Cluster on free local ports, joined with `redis-cli --cluster create`); no system service is
# used. Redis Cluster's sharded pub/sub needs Redis 7.
# Idempotent: installs only what is missing, and runs `apt-get update` only when it must.
set -euo pipefail

missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }

need_cmd redis-server redis-server
need_cmd redis-cli redis-tools

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"
apt_install redis.sh "${missing[@]}"
# The package starts a system service on the default port; the tests never use it.
if command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
