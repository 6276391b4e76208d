#!/usr/bin/env bash
# Installs Python `websockets` into .deps/python (not system-wide): the independent server the
# client's interop tests (crates/resocket/tests/interop.rs) run against.
# Idempotent: does nothing when that version is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

version="15.0.1"
target=".deps/python"
if PYTHONPATH="$target" python3 -c "import websockets, sys; sys.exit(websockets.__version__ != '$version')" 2>/dev/null; then
    exit 0
fi
echo "python-websockets.sh: installing websockets $version into $target" >&2
for try in 1 2 3; do
    if python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --root-user-action=ignore \
        --upgrade --target "$target" "websockets==$version"; then
        exit 0
    fi
    echo "python-websockets.sh: pip failed (try $try), retrying" >&2
    sleep 5
done
echo "python-websockets.sh: could not install websockets $version" >&2
exit 1
