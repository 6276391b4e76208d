#!/usr/bin/env bash
# Installs the real proxy servers and TLS build deps the resocket integration tests use:
# tinyproxy-bin (HTTP CONNECT), microsocks (SOCKS5), stunnel4 (TLS in front of tinyproxy, for the
# https:// proxy test), and libssl-dev + pkg-config (the `native-tls` feature on Linux).
# Idempotent: installs only what is missing, and runs `apt-get update` only when it must.
set -euo pipefail

missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || missing+=("$1"); }

need_cmd tinyproxy tinyproxy-bin
need_cmd microsocks microsocks
need_cmd stunnel4 stunnel4
need_cmd pkg-config pkg-config
# unshare + mount: the socks5h test gives microsocks its own /etc/hosts.
need_cmd unshare util-linux
need_pkg libssl-dev

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
# Other jobs on the machine may hold the apt/dpkg locks: wait for them instead of failing.
apt() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
echo "proxies.sh: installing ${missing[*]}" >&2
for try in 1 2 3 4 5; do
    if apt update -qq && apt install -y -qq --no-install-recommends "${missing[@]}"; then
        exit 0
    fi
    echo "proxies.sh: apt-get failed (try $try), retrying" >&2
    sleep 10
done
echo "proxies.sh: could not install ${missing[*]}" >&2
exit 1
