"""Signing keys made in the tests, their JWK Sets, and JWTs as an EHR would send them (or forge them)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import SecretStr

ISSUER = "https://ehr.example.com"
JWKS_URL = "https://ehr.example.com/.well-known/jwks.json"
OTHER_JWKS_URL = "https://keys.ehr.example.com/jwks"
TENANT = "2ddd6c3a-8e9a-44c6-a305-52111ad302a2"
BASE_URL = "https://cds.example.org"
# Signs the Prior Notification form links wherever JWTs are required (production settings need a key).
FORM_KEY = SecretStr("test form-link signing key, 32+ characters long")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: Any

    @property
    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        family = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk = family.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


def make_key(alg: str = "ES384", kid: str | None = None) -> SigningKey:
    if alg in CURVES:
        private = ec.generate_private_key(CURVES[alg]())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, private)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk for key in keys]}


def claims(endpoint: str, **overrides: Any) -> dict[str, Any]:
    """What a well-behaved EHR signs for a call to `endpoint` (a path such as /cds-services/x)."""
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": BASE_URL + endpoint,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "tenant": TENANT,
    }
    payload.update(overrides)
    return {name: value for name, value in payload.items() if value is not None}


def sign(key: SigningKey, payload: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT", **headers})


def token_for(key: SigningKey, endpoint: str, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
    return sign(key, claims(endpoint, **overrides), **(headers or {}))


def unsigned(endpoint: str, kid: str) -> str:
    """alg `none`: no signature at all."""
    return jwt.encode(claims(endpoint), key=None, algorithm="none", headers={"kid": kid})


def hmac_with_public_key(key: SigningKey, endpoint: str) -> str:
    """The classic algorithm-confusion forgery: HS256 keyed with the (public) verification key.

    PyJWT refuses to HMAC-sign with a PEM key, so the token is assembled by hand, as an attacker would.
    """
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    segments = [jwt.utils.base64url_encode(json.dumps(part).encode()) for part in (header, claims(endpoint))]
    signing_input = b".".join(segments)
    signature = hmac.new(key.public_pem, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
