"""The OpenAPI 3.1 document of the HTTP API: valid, served as it is kept, built from the very schemas
the service validates with, and naming exactly the services the registry declares."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from cds_service.pipeline.validation import schema_document
from cds_service.web.openapi import DOCUMENT, openapi_document
from hooks import SERVICES
from tests.api_contract import examples, schema_at


def test_the_openapi_document_is_valid_openapi_3_1(client):
    served = client.get("/openapi.json")
    assert served.status_code == 200
    document = served.get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_served_document_is_the_kept_one_with_the_schema_files_embedded(client):
    document = client.get("/openapi.json").get_json()
    kept = json.loads(DOCUMENT.read_text())
    assert document["paths"] == kept["paths"]
    embedded = [n for n, s in kept["components"]["schemas"].items() if s.get("$ref", "").startswith("../")]
    assert len(embedded) == 8
    for name in embedded:
        refs = json.dumps(document["components"]["schemas"][name]).split('"$ref": "')[1:]
        assert all(ref.startswith(f"#/components/schemas/{name}/") for ref in refs), name


@pytest.mark.parametrize(
    ("component", "file"), [("HookRequest", "request.schema.json"), ("Feedback", "feedback.schema.json")]
)
def test_an_embedded_schema_judges_bodies_as_its_file_does(component, file):
    source = Draft202012Validator(schema_document(file))
    served = schema_at(f"/components/schemas/{component}")
    bodies = [body for _service, body in examples()] if component == "HookRequest" else [FEEDBACK]
    broken = [{**body, "hookInstance": "x"} for body in bodies] if component == "HookRequest" else [{"feedback": []}]
    for body in bodies + broken:
        assert source.is_valid(body) == served.is_valid(body)
    assert all(source.is_valid(body) for body in bodies)
    assert not any(served.is_valid(body) for body in broken)


FEEDBACK = {
    "feedback": [
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-26T10:00:00Z",
        }
    ]
}


# The surgical practice's Prior Notification endpoints (docs/integrators/prior-notification.md); the form's
# HTML pages are for people and are not in the document.
PRIOR_NOTIFICATION_PATHS = {
    "/fhir/Questionnaire/{id}",
    "/fhir/QuestionnaireResponse",
    "/fhir/QuestionnaireResponse/{id}",
    "/fhir/QuestionnaireResponse/{id}/_history/{vid}",
}


def test_the_document_describes_each_declared_service_and_its_feedback():
    paths = openapi_document()["paths"]
    declared = {f"/cds-services/{s.id}" for s in SERVICES} | {f"/cds-services/{s.id}/feedback" for s in SERVICES}
    assert set(paths) == declared | {"/cds-services"} | PRIOR_NOTIFICATION_PATHS
    for service in SERVICES:
        body = paths[f"/cds-services/{service.id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["allOf"][1]["properties"]["hook"] == {"const": service.hook}
        # 422 (a CRD extension not honoured) only where the service speaks CRD (docs/integrators/errors.md).
        assert ("422" in paths[f"/cds-services/{service.id}"]["post"]["responses"]) == bool(service.crd_topics)


def test_the_document_describes_the_prior_notification_endpoints_as_the_app_routes_them(client):
    document = openapi_document()
    routed = {(rule.rule, method) for rule in client.application.url_map.iter_rules() for method in rule.methods or ()}
    for path in PRIOR_NOTIFICATION_PATHS:
        for method in document["paths"][path]:
            assert (
                path.replace("{id}", "<record_id>" if "Response" in path else "<questionnaire_id>").replace(
                    "{vid}", "<version_id>"
                ),
                method.upper(),
            ) in routed
    submit = document["paths"]["/fhir/QuestionnaireResponse"]["post"]
    assert {"200", "201", "400", "401", "503"} <= set(submit["responses"])
