"""An identity provider's published keys for tests: JWKs of generated keys, served as a JWKS
by a `ScriptedSink` (its reply can be swapped to rotate keys)."""

from __future__ import annotations

import json
from typing import Any

from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.sinks import Reply


def jwk(public: Any, kid: str, alg: str) -> dict[str, Any]:
    """The JWK of an RSA (RS256) or EC P-256 (ES256) public key."""
    algorithm = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    entry: dict[str, Any] = json.loads(algorithm.to_jwk(public))
    return {**entry, "kid": kid, "alg": alg, "use": "sig"}


def jwks(*keys: object) -> Reply:
    """A JWKS document as a sink's reply."""
    return Reply(200, {"content-type": "application/json"}, json.dumps({"keys": keys}).encode())
