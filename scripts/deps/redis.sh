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

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
# Other jobs on the machine may hold the apt/dpkg locks: wait for them instead of failing.
apt() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
echo "redis.sh: installing ${missing[*]}" >&2
for try in 1 2 3 4 5; do
    if apt update -qq && apt install -y -qq --no-install-recommends "${missing[@]}"; then
        # The package starts a system service on the default port; the tests never use it.
        if command -v systemctl >/dev/null 2>&1; then
            $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
        fi
        exit 0
    fi
    echo "redis.sh: apt-get failed (try $try), retrying" >&2
    sleep 10
done
echo "redis.sh: could not install ${missing[*]}" >&2
exit 1
