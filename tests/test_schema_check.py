"""The fast schema check agrees with jsonschema: same yes/no on every instance tried.

Hook requests are checked by the fast check first and by jsonschema only when it says no, so a yes
where jsonschema says no would let an invalid request through. These tests mutate real requests
member by member and compare the two.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from cds_service.schema_check import Unsupported, compile_check
from cds_service.validation import quick_check, validator
from tests.builders import medication_request, ortho_referral, patient

EXAMPLES = Path(__file__).resolve().parent.parent / "guideline_data" / "examples"
HOOK_SCHEMAS = ("order-select", "order-sign", "patient-view")
UUID = "e48efab4-cf11-537e-98ec-e8bc1fdbc5e0"
PROBES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    1.5,
    -0.5,
    float("nan"),
    "",
    " ",
    "x",
    "\x1c",
    UUID,
    UUID + "\n",
    UUID.upper(),
    "Practitioner/dr-1",
    "Practitioner/dr-1\n",
    "Patient/p1",
    "ServiceRequest/referral-ortho",
    "http://ehr.example.org/fhir",
    "https://ehr.example.org/fhir?x=1",
    "https://bad host/fhir",
    "https://\x1cexample.org",
    "ftp://example.org",
    "Bundle",
    "Bearer",
    "bearer",
    [],
    [{}],
    ["x"],
    [{"resource": {"resourceType": "ServiceRequest"}}],
    [{"resource": {"resourceType": "serviceRequest"}}],
    [{"resource": {}}],
    {},
    {"a": 1},
    {"resourceType": "Bundle"},
    {"resourceType": "Bundle", "entry": []},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "ServiceRequest", "id": "x"}}]},
    {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "c"},
    {"access_token": "t", "token_type": "Bearer", "expires_in": -1, "scope": "s", "subject": "c"},
    {"access_token": "t", "token_type": "Bearer", "expires_in": 1.0, "scope": "s", "subject": "c"},
    {"access_token": "t", "token_type": "Bearer", "expires_in": True, "scope": "s", "subject": "c"},
    {"access_token": "", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "c", "extension": {}},
]


def requests() -> list[dict[str, Any]]:
    """Example requests, and builder requests for each hook, with and without optional members."""
    found = [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))]
    record = patient(45).with_lbp()
    referral, opioid = ortho_referral(), medication_request()
    found += [record.order_select(referral, opioid), record.order_sign(referral, opioid), record.patient_view()]
    authorized = copy.deepcopy(found[0])
    authorized["fhirServer"] = "https://ehr.example.org/fhir"
    authorized["fhirAuthorization"] = copy.deepcopy(PROBES[-5])
    authorized["extension"] = {"com.example": 1}
    authorized["context"]["encounterId"] = "e1"
    return [*found, authorized]


def paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every member and item, except the inside of prefetch (which the schema leaves alone)."""
    yield path
    if path[:1] == ("prefetch",) and len(path) >= 2:
        return
    if isinstance(value, dict):
        for key, member in value.items():
            yield from paths(member, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*path, index))


def mutations(request: dict[str, Any]) -> Iterator[Any]:
    """The request with one member replaced by each probe, removed, or joined by an extra member."""
    for path in paths(request):
        for probe in [*PROBES, "DELETE", "ADD"]:
            mutated = copy.deepcopy(request)
            if not path:
                if probe not in ("DELETE", "ADD"):
                    yield probe
                continue
            parent = mutated
            for step in path[:-1]:
                parent = parent[step]
            last = path[-1]
            if probe == "DELETE":
                del parent[last]
            elif probe == "ADD":
                target = parent[last]
                if isinstance(target, dict):
                    target["x-extra"] = 1
                elif isinstance(target, list):
                    target.append(copy.deepcopy(target[0]) if target else {})
                else:
                    continue
            else:
                parent[last] = copy.deepcopy(probe)
            yield mutated


def agree(schema_name: str, instance: Any) -> None:
    quick = quick_check(schema_name)
    assert quick is not None, f"{schema_name} no longer compiles to a fast check"
    expected = validator(schema_name).is_valid(instance)
    assert quick(instance) == expected, f"{schema_name}: fast check says {not expected} for {instance!r}"


@pytest.mark.parametrize("request_index", range(len(requests())))
def test_fast_check_agrees_with_jsonschema_on_mutated_requests(request_index):
    request = requests()[request_index]
    for mutated in mutations(request):
        agree("request.schema.json", mutated)
        context = mutated.get("context") if isinstance(mutated, dict) else None
        for hook in HOOK_SCHEMAS:
            agree(f"context/{hook}.schema.json", context)


def test_example_requests_pass_the_fast_check():
    for request in requests():
        assert quick_check("request.schema.json")(request)
        assert quick_check(f"context/{request['hook']}.schema.json")(request["context"])


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer"},
        {"type": "number"},
        {"type": ["string", "null"]},
        {"type": "boolean"},
        {"const": "Bundle"},
        {"minimum": 0},
        {"minLength": 2},
        {"pattern": "^a$"},
        {"minItems": 1, "items": {"type": "string"}},
        {"items": False},
        {"minProperties": 1},
        {"required": ["a"], "dependentRequired": {"b": ["a"]}},
        {"properties": {"a": {"$ref": "#/$defs/s"}}, "$defs": {"s": {"type": "string", "minLength": 1}}},
        {"properties": {"a": True, "b": False}},
    ],
)
def test_each_keyword_behaves_as_in_jsonschema(schema):
    reference, quick = Draft202012Validator(schema), compile_check(schema)
    values = [*PROBES, "a", "ab", "a\n", "é", 2, 2.0, 10**30, [1], ["a", "b"], {"a": "x"}, {"b": 1}, {"a": "", "b": 1}]
    values += [{"a": 1}, {"a": "x", "b": 1}]
    for value in values:
        assert quick(value) == reference.is_valid(value), (schema, value)


@pytest.mark.parametrize(
    "schema",
    [
        {"enum": ["a"]},
        {"anyOf": [{"type": "string"}]},
        {"additionalProperties": False},
        {"$ref": "https://example.org/other.json"},
        {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"properties": {"a": {"$id": "https://example.org/a", "type": "string"}}},
        {"const": 1},
        {"$anchor": "x"},
        {"x-vendor": 1},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"},
    ],
)
def test_what_it_does_not_reproduce_is_refused(schema):
    with pytest.raises(Unsupported):
        compile_check(schema)


def test_the_feedback_schema_is_left_to_jsonschema():
    assert quick_check("feedback.schema.json") is None
