#!/usr/bin/env bash
# Installs Node `ws` into .deps/node (not globally): the second independent server the client's
# interop tests (crates/resocket/tests/interop.rs) run against.
# Idempotent: does nothing when that version is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

version="8.18.3"
target=".deps/node"
installed="$target/node_modules/ws/package.json"
if [ -f "$installed" ] && grep -q "\"version\": \"$version\"" "$installed"; then
    exit 0
fi
echo "node-ws.sh: installing ws $version into $target" >&2
mkdir -p "$target"
for try in 1 2 3; do
    if npm install --silent --no-audit --no-fund --no-save --prefix "$target" "ws@$version"; then
        exit 0
    fi
    echo "node-ws.sh: npm failed (try $try), retrying" >&2
    sleep 5
done
echo "node-ws.sh: could not install ws $version" >&2
exit 1
