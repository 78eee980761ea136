"""Verify a Tessera access token with PyJWT, an independent JOSE implementation.

Usage: verify_pyjwt.py BASE_URL TOKEN ISSUER AUDIENCE
Fetches BASE_URL/.well-known/jwks.json, picks the key by kid, verifies signature, exp, nbf,
iss, aud and typ, and prints the claims as JSON. Exits 1 on any verification failure.
"""
import json
import sys
import urllib.request

import jwt
from jwt import PyJWKSet


def main() -> int:
    base, token, issuer, audience = sys.argv[1:5]
    with urllib.request.urlopen(base + "/.well-known/jwks.json", timeout=10) as r:
        jwks = PyJWKSet.from_dict(json.load(r))
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        print("bad typ", header.get("typ"), file=sys.stderr)
        return 1
    key = next((k for k in jwks.keys if k.key_id == header.get("kid")), None)
    if key is None:
        print("unknown kid", file=sys.stderr)
        return 1
    try:
        claims = jwt.decode(
            token,
            key=key.key,
            algorithms=[key.algorithm_name],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
        )
    except jwt.PyJWTError as e:
        print("rejected:", type(e).__name__, e, file=sys.stderr)
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
