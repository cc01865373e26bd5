"""The HTTP contract as the OpenAPI document states it, for the fuzz tests: an app that requires JWTs
(its issuer's key pinned, so nothing is fetched), fresh tokens, and a check that an answer is one
the document allows."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from cds_service.settings import Settings, TrustedIssuer, signing_keys
from cds_service.web.openapi import openapi_document
from tests.conftest import assert_conformant
from tests.tokens import FORM_KEY, ISSUER, SigningKey, bearer, jwks, make_key, token_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "guideline_data" / "examples"
BASE_URL = "https://cds.example.org"


@cache
def signing_key() -> SigningKey:
    return make_key("ES384")


def jwt_settings(tmp_path: Path, database_url: str) -> Settings:
    """JWTs required, as in production; the issuer's public key pinned in the configuration."""
    issuer = TrustedIssuer(ISSUER, pinned_keys=MappingProxyType(signing_keys(jwks(signing_key()), "test")))
    return Settings(
        public_base_url=BASE_URL,
        require_jwt=True,
        trusted_issuers=MappingProxyType({ISSUER: issuer}),
        form_signing_key=FORM_KEY,
        database_url=database_url,
        state_dir=tmp_path / "state",
    )


def auth_headers(path: str) -> dict[str, str]:
    return bearer(token_for(signing_key(), path, aud=BASE_URL + path))


def examples() -> list[tuple[str, dict[str, Any]]]:
    """(service id, request) of every bundled example."""
    import yaml

    index = yaml.safe_load((EXAMPLES / "index.yaml").read_text())
    return [(e["service"], json.loads((EXAMPLES / f"{e['id']}.json").read_text())) for e in index["examples"]]


def schema_at(pointer: str) -> Draft202012Validator:
    document = openapi_document()
    registry: Registry[Any] = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=registry)


@cache
def outcome_validator() -> Draft202012Validator:
    return schema_at("/components/schemas/OperationOutcome")


def documented_statuses(path: str) -> set[int]:
    operation = openapi_document()["paths"][path]["post"]
    return {int(status) for status in operation["responses"]}


def assert_answer_allowed(path: str, status: int, body: bytes, headers: Any) -> None:
    """No 5xx; a status the document lists for this operation; a body of the documented shape."""
    assert status < 500, (path, status, body[:500])
    assert status in documented_statuses(path), (path, status, body[:300])
    assert headers.get("Cache-Control") == "no-store", (path, status)
    payload = json.loads(body)
    if status != 200:
        errors = [e.message for e in outcome_validator().iter_errors(payload)]
        assert not errors, (path, status, errors)
    elif path.endswith("/feedback"):
        assert payload == {}
    else:
        assert_conformant(payload)
