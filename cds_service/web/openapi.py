"""GET /openapi.json: the OpenAPI 3.1 document of the HTTP API (cds_service/web/openapi.json).

The document in the repository refers to the request and response JSON Schemas by file
(`../pipeline/schemas/...`), the very files the service validates with; when served, each is
embedded under components/schemas, its own `#/$defs/...` references pointed at where it now sits,
so one self-contained document describes exactly what the service checks.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify

from cds_service import version
from cds_service.pipeline.validation import SCHEMA_DIR, schema_document

DOCUMENT = Path(__file__).resolve().parent / "openapi.json"
SCHEMA_PREFIX = "../pipeline/schemas/"
blueprint = Blueprint("openapi", __name__)


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@cache
def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    document["info"]["version"] = version()  # the API is versioned with the package (CHANGELOG.md)
    schemas = document["components"]["schemas"]
    for name, schema in schemas.items():
        reference = schema.get("$ref", "")
        if reference.startswith(SCHEMA_PREFIX):
            schemas[name] = embedded(reference.removeprefix(SCHEMA_PREFIX), f"#/components/schemas/{name}")
    return document


def embedded(file: str, at: str) -> dict[str, Any]:
    """A schema file as a component: without $schema and $id, its internal references rebased to `at`."""
    if not (SCHEMA_DIR / file).is_file():
        raise FileNotFoundError(f"openapi.json refers to {file}, which is not in {SCHEMA_DIR}")
    schema = copy.deepcopy(schema_document(file))
    schema.pop("$schema", None)
    schema.pop("$id", None)
    embedded_schema: dict[str, Any] = rebased(schema, at)
    return embedded_schema


def rebased(node: Any, at: str) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                at + value[1:]
                if key == "$ref" and isinstance(value, str) and value.startswith("#/")
                else rebased(value, at)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [rebased(value, at) for value in node]
    return node
