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

# shellcheck source=lib/apt.sh
. "$(dirname "$0")/lib/apt.sh"
apt_install proxies.sh "${missing[@]}"
