"""Keys and tokens from an implementation independent of the hub's: PyJWT on `cryptography`.

Reads one JSON job on stdin and prints one JSON object on stdout:

    {"dir": "/tmp/x",
     "keys": [{"name": "rsa", "alg": "RS256"}],
     "tokens": [{"alg": "RS256", "key": "rsa", "kid": "rsa", "claims": {...}},
                {"alg": "HS256", "secret": "...", "claims": {...}}]}

For every key it writes DIR/NAME.pub.pem (the public key, SubjectPublicKeyInfo) and
DIR/NAME.jwk.json (the public JWK, with "kid": NAME, its "alg" and "use": "sig"); it prints
{"tokens": [...]}, the compact JWTs in the order asked.
"""

import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def generate(alg):
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1()), ECAlgorithm
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1()), ECAlgorithm
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm
    raise SystemExit(f"no key type for {alg}")


def main():
    job = json.load(sys.stdin)
    out_dir = job["dir"]
    private = {}
    for spec in job.get("keys", []):
        name, alg = spec["name"], spec["alg"]
        key, family = generate(alg)
        private[name] = key
        public = key.public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with open(os.path.join(out_dir, f"{name}.pub.pem"), "wb") as f:
            f.write(pem)
        jwk = family.to_jwk(public, as_dict=True)
        jwk.update({"kid": name, "alg": alg, "use": "sig"})
        with open(os.path.join(out_dir, f"{name}.jwk.json"), "w") as f:
            json.dump(jwk, f)
    tokens = []
    for spec in job.get("tokens", []):
        key = private[spec["key"]] if "key" in spec else spec["secret"].encode()
        headers = {"kid": spec["kid"]} if spec.get("kid") else None
        tokens.append(jwt.encode(spec["claims"], key, algorithm=spec["alg"], headers=headers))
    json.dump({"tokens": tokens}, sys.stdout)


main()
