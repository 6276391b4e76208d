#!/usr/bin/env bash
# Installs Python `PyJWT` and `cryptography` into .deps/python (not system-wide): the independent
# implementation that mints the tokens of the hub's identity-provider tests
# (crates/resocket-hub/tests/jwt_providers.rs), for HS256, RS256, ES256 and EdDSA.
# Idempotent: does nothing when those versions are already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

pyjwt="2.15.1"
cryptography="50.0.2"
target=".deps/python"
if PYTHONPATH="$target" python3 -c "
import sys, jwt, cryptography
sys.exit(jwt.__version__ != '$pyjwt' or cryptography.__version__ != '$cryptography')
" 2>/dev/null; then
    exit 0
fi
echo "pyjwt.sh: installing PyJWT $pyjwt and cryptography $cryptography into $target" >&2
for try in 1 2 3; do
    # --upgrade replaces only these packages in the shared target; other packages there stay.
    if python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --root-user-action=ignore \
        --upgrade --target "$target" "PyJWT==$pyjwt" "cryptography==$cryptography"; then
        exit 0
    fi
    echo "pyjwt.sh: pip failed (try $try), retrying" >&2
    sleep 5
done
echo "pyjwt.sh: could not install PyJWT $pyjwt and cryptography $cryptography" >&2
exit 1
