"""Tests for the JSON Schemas in cds_service/schemas/.

Positive cases use the CDS Hooks 2.0.1 specification examples copied into
tests/fixtures/spec_examples/ (see the README there). Negative cases assert
the JSON path and the failing keyword of each expected error.

Validators are Draft 2020-12 with no format checker: the schemas express
UUID / URL / date-time shapes with `pattern`, never `format`.
"""

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "cds_service" / "pipeline" / "schemas"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "spec_examples"

SCHEMA_FILES = [
    "request.schema.json",
    "response.schema.json",
    "discovery.schema.json",
    "feedback.schema.json",
    "context/order-select.schema.json",
    "context/order-sign.schema.json",
    "context/patient-view.schema.json",
    "context/appointment-book.schema.json",
]

CARD_UUID = "4e0a3a1e-3283-4575-ab82-028d55fe2719"
SUGGESTION_UUID = "e56e1945-20b3-4393-8503-a1a20fd73152"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def load_schema(name):
    with open(SCHEMA_DIR / name, encoding="utf-8") as fh:
        return json.load(fh)


def fixture(name):
    with open(FIXTURES / name, encoding="utf-8") as fh:
        return json.load(fh)


def validator(schema):
    # No format_checker: `format` would only be an annotation anyway.
    return Draft202012Validator(schema)


def view(schema, def_name):
    """The same schema document with its root pointed at #/$defs/<def_name>."""
    assert def_name in schema["$defs"], def_name
    return {
        "$schema": schema["$schema"],
        "$id": schema["$id"],
        "$ref": "#/$defs/" + def_name,
        "$defs": schema["$defs"],
    }


def sites(schema, instance):
    """Set of (json_path, keyword) for every top-level error."""
    return {(e.json_path, e.validator) for e in validator(schema).iter_errors(instance)}


def assert_valid(schema, instance):
    errs = [f"{e.json_path}: {e.message}" for e in validator(schema).iter_errors(instance)]
    assert not errs, "\n".join(errs)


def assert_error(schema, instance, path, keyword, message_part=None):
    errs = list(validator(schema).iter_errors(instance))
    found = [e for e in errs if e.json_path == path and e.validator == keyword]
    assert found, f"expected {keyword} at {path}, got {[(e.json_path, e.validator, e.message) for e in errs]}"
    if message_part is not None:
        assert any(message_part in e.message for e in found), [e.message for e in found]


def walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# schemas, loaded once
REQUEST = load_schema("request.schema.json")
RESPONSE = load_schema("response.schema.json")
SPEC_RESPONSE = view(RESPONSE, "specResponse")
DISCOVERY = load_schema("discovery.schema.json")
FEEDBACK = load_schema("feedback.schema.json")
CONTEXT = {
    "order-select": load_schema("context/order-select.schema.json"),
    "order-sign": load_schema("context/order-sign.schema.json"),
    "patient-view": load_schema("context/patient-view.schema.json"),
    "appointment-book": load_schema("context/appointment-book.schema.json"),
}


def order_select_request():
    ctx = fixture("hook-order-select-r4.json")["context"]
    return {
        "hook": "order-select",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": "https://fhir.example.org/r4",
        "context": ctx,
    }


def strict_response():
    """A response that satisfies the lbp-cds strict profile (built for tests)."""
    return {
        "cards": [
            {
                "uuid": CARD_UUID,
                "summary": "Imaging not indicated for acute low back pain without red flags",
                "detail": "Guideline: no routine **imaging** in the first 6 weeks.",
                "indicator": "warning",
                "source": {
                    "label": "Example Guideline",
                    "url": "https://guidelines.example.org/lbp",
                    "icon": "https://guidelines.example.org/icon-100.png",
                    "topic": {
                        "system": "https://lbp-cds.example.org/topics",
                        "code": "imaging",
                        "display": "Imaging appropriateness",
                    },
                    "extension": {"lbp-cds-content-version": "b7bb25d6194e"},
                },
                "suggestions": [
                    {
                        "uuid": SUGGESTION_UUID,
                        "label": "Remove the lumbar MRI order",
                        "isRecommended": True,
                        "actions": [
                            {
                                "type": "delete",
                                "description": "Remove the MRI order",
                                "resourceId": "ServiceRequest/mri-1",
                            },
                            {
                                "type": "create",
                                "description": "Order physiotherapy referral",
                                "resource": {
                                    "resourceType": "ServiceRequest",
                                    "status": "draft",
                                    "intent": "order",
                                    "code": {
                                        "coding": [
                                            {
                                                "system": "http://snomed.info/sct",
                                                "code": "91251008",
                                            }
                                        ]
                                    },
                                    "subject": {"reference": "Patient/1288992"},
                                },
                            },
                        ],
                    }
                ],
                "selectionBehavior": "at-most-one",
                "overrideReasons": [
                    {
                        "code": "red-flag",
                        "system": "https://lbp-cds.example.org/override-reasons",
                        "display": "Red flag present",
                    }
                ],
                "links": [
                    {
                        "label": "Guideline",
                        "url": "https://guidelines.example.org/lbp#imaging",
                        "type": "absolute",
                    },
                    {
                        "label": "Decision aid",
                        "url": "https://smart.example.org/launch",
                        "type": "smart",
                        "appContext": '{"topic":"imaging"}',
                    },
                ],
            }
        ],
        "systemActions": [
            {
                "type": "update",
                "description": "Record appropriateness",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "mri-1",
                    "status": "draft",
                    "extension": [COVERAGE_INFORMATION],
                },
            }
        ],
    }


# The one kind of system action lbp-cds answers with: Da Vinci CRD Coverage Information.
COVERAGE_INFORMATION = {
    "url": "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information",
    "extension": [
        {"url": "coverage", "valueReference": {"reference": "Coverage/cov-1"}},
        {"url": "covered", "valueCode": "covered"},
        {"url": "date", "valueDate": "2026-11-26"},
        {"url": "coverage-assertion-id", "valueString": "b0f8a4f2-7f3c-4d58-9f51-3c0e4a8f6e11"},
    ],
}


# --------------------------------------------------------------------------
# the schema files themselves
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_is_valid_draft_2020_12(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema.get("description")


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_uses_no_format_keyword(name):
    for node in walk(load_schema(name)):
        assert "format" not in node


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_has_no_remote_refs(name):
    # Every schema is self-contained: only local "#/..." references.
    for node in walk(load_schema(name)):
        if "$ref" in node:
            assert node["$ref"].startswith("#/"), node["$ref"]


# --------------------------------------------------------------------------
# request envelope + hook contexts: spec examples
# --------------------------------------------------------------------------


def test_spec_request_example_validates():
    body = fixture("02-service-request-patient-view.json")
    assert_valid(REQUEST, body)
    assert_valid(CONTEXT[body["hook"]], body["context"])


@pytest.mark.parametrize(
    "name,hook",
    [
        ("hook-order-select-r4.json", "order-select"),
        ("hook-order-select-stu3.json", "order-select"),
        ("hook-order-select-dstu2.json", "order-select"),
        ("hook-order-sign-r4.json", "order-sign"),
        ("hook-order-sign-stu3.json", "order-sign"),
        ("hook-order-sign-dstu2.json", "order-sign"),
        ("hook-patient-view-1.json", "patient-view"),
        ("hook-patient-view-2.json", "patient-view"),
    ],
)
def test_hook_definition_context_examples_validate(name, hook):
    assert_valid(CONTEXT[hook], fixture(name)["context"])


def test_spec_fhir_authorization_example_validates():
    body = fixture("02-service-request-patient-view.json")
    body["fhirAuthorization"] = fixture("09-passing-the-access-token-to-the-cds-service.json")["fhirAuthorization"]
    body["fhirAuthorization"]["patient"] = "1288992"
    assert_valid(REQUEST, body)


def test_spec_extension_request_example():
    body = fixture("26-extensions.json")
    assert_valid(REQUEST, body)
    # The spec's extension example is abbreviated: its patient-view context has
    # no patientId, which the patient-view hook REQUIRES.
    assert_error(CONTEXT["patient-view"], body["context"], "$", "required", "'patientId'")


def test_request_with_order_select_context_validates():
    body = order_select_request()
    assert_valid(REQUEST, body)
    assert_valid(CONTEXT["order-select"], body["context"])


def test_request_extension_must_be_object():
    body = fixture("26-extensions.json")
    body["extension"] = "com.example"
    assert_error(REQUEST, body, "$.extension", "type")


def test_request_unknown_top_level_member_allowed():
    body = fixture("02-service-request-patient-view.json")
    body["com.example.somethingNew"] = [1, 2, 3]
    assert_valid(REQUEST, body)


# --------------------------------------------------------------------------
# request envelope: negative cases
# --------------------------------------------------------------------------


def test_request_missing_hook_instance():
    body = fixture("02-service-request-patient-view.json")
    del body["hookInstance"]
    assert_error(REQUEST, body, "$", "required", "'hookInstance'")


@pytest.mark.parametrize(
    "value",
    [
        "not-a-uuid",
        "d1577c69dfbe44adba6d3e05e953b2ea",
        "",
        "{d1577c69-dfbe-44ad-ba6d-3e05e953b2ea}",
    ],
)
def test_request_non_uuid_hook_instance(value):
    body = fixture("02-service-request-patient-view.json")
    body["hookInstance"] = value
    assert_error(REQUEST, body, "$.hookInstance", "pattern")


def test_request_hook_instance_uppercase_uuid_allowed():
    body = fixture("02-service-request-patient-view.json")
    body["hookInstance"] = body["hookInstance"].upper()
    assert_valid(REQUEST, body)


def test_request_missing_context_and_hook():
    body = fixture("02-service-request-patient-view.json")
    del body["context"], body["hook"]
    assert {("$", "required")} == sites(REQUEST, body)
    messages = " ".join(e.message for e in validator(REQUEST).iter_errors(body))
    assert "'context'" in messages and "'hook'" in messages


def test_request_fhir_authorization_without_fhir_server():
    body = fixture("02-service-request-patient-view.json")
    del body["fhirServer"]
    assert_error(REQUEST, body, "$", "dependentRequired", "'fhirServer'")


def test_request_fhir_server_without_authorization_allowed():
    body = fixture("02-service-request-patient-view.json")
    del body["fhirAuthorization"]
    assert_valid(REQUEST, body)


def test_request_fhir_server_must_be_absolute_http_url():
    body = fixture("02-service-request-patient-view.json")
    body["fhirServer"] = "/fhir"
    assert_error(REQUEST, body, "$.fhirServer", "pattern")


@pytest.mark.parametrize("field", ["access_token", "token_type", "expires_in", "scope", "subject"])
def test_request_fhir_authorization_required_fields(field):
    body = fixture("02-service-request-patient-view.json")
    del body["fhirAuthorization"][field]
    assert_error(REQUEST, body, "$.fhirAuthorization", "required", repr(field))


def test_request_fhir_authorization_token_type_and_expiry():
    body = fixture("02-service-request-patient-view.json")
    body["fhirAuthorization"]["token_type"] = "MAC"
    body["fhirAuthorization"]["expires_in"] = "300"
    assert_error(REQUEST, body, "$.fhirAuthorization.token_type", "const")
    assert_error(REQUEST, body, "$.fhirAuthorization.expires_in", "type")


def test_request_prefetch_value_string_accepted_for_the_service_to_refetch():
    # EHRs have sent error pages in place of a resource: the envelope accepts them and
    # the service fetches such a key instead (tests/test_fhir_fetch.py).
    body = fixture("02-service-request-patient-view.json")
    body["prefetch"]["patientToGreet"] = "<html>502 Bad Gateway</html>"
    assert sites(REQUEST, body) == set()


def test_request_prefetch_value_null_allowed():
    body = fixture("02-service-request-patient-view.json")
    body["prefetch"]["conditions"] = None
    assert_valid(REQUEST, body)


def test_spec_prefetch_data_example_user_string_accepted():
    # Spec example "Example prefetch data" shows "user": "123" although the text says each
    # value is a FHIR resource or null; the envelope accepts it and the service refetches.
    body = fixture("02-service-request-patient-view.json")
    body["prefetch"] = fixture("08-example-prefetch-data.json")["prefetch"]
    assert sites(REQUEST, body) == set()


def test_order_select_without_selections():
    ctx = fixture("hook-order-select-r4.json")["context"]
    del ctx["selections"]
    assert_error(CONTEXT["order-select"], ctx, "$", "required", "'selections'")
    # ...which is exactly an order-sign context.
    assert_valid(CONTEXT["order-sign"], ctx)


def test_order_select_selections_empty():
    ctx = fixture("hook-order-select-r4.json")["context"]
    ctx["selections"] = []
    assert_error(CONTEXT["order-select"], ctx, "$.selections", "minItems")


@pytest.mark.parametrize(
    "value",
    [
        "103",
        "MedicationRequest/",
        "/103",
        "medicationRequest/103",
        "MedicationRequest/a b",
    ],
)
def test_order_select_selection_not_a_reference(value):
    ctx = fixture("hook-order-select-r4.json")["context"]
    ctx["selections"] = [value]
    assert_error(CONTEXT["order-select"], ctx, "$.selections[0]", "pattern")


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_draft_orders_not_a_bundle(hook):
    ctx = fixture(f"hook-{hook}-r4.json")["context"]
    ctx["draftOrders"]["resourceType"] = "MedicationRequest"
    assert_error(CONTEXT[hook], ctx, "$.draftOrders.resourceType", "const")


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_draft_orders_shape(hook):
    schema = CONTEXT[hook]
    ctx = fixture(f"hook-{hook}-r4.json")["context"]

    bad = copy.deepcopy(ctx)
    bad["draftOrders"] = [entry["resource"] for entry in ctx["draftOrders"]["entry"]]
    assert_error(schema, bad, "$.draftOrders", "type")

    bad = copy.deepcopy(ctx)
    bad["draftOrders"]["entry"] = []
    assert_error(schema, bad, "$.draftOrders.entry", "minItems")

    bad = copy.deepcopy(ctx)
    del bad["draftOrders"]["entry"][0]["resource"]["resourceType"]
    assert_error(schema, bad, "$.draftOrders.entry[0].resource", "required", "'resourceType'")

    bad = copy.deepcopy(ctx)
    bad["draftOrders"]["entry"][1] = {"fullUrl": "urn:uuid:x"}
    assert_error(schema, bad, "$.draftOrders.entry[1]", "required", "'resource'")

    bad = copy.deepcopy(ctx)
    del bad["draftOrders"]
    assert_error(schema, bad, "$", "required", "'draftOrders'")


def test_patient_view_without_patient_id():
    ctx = fixture("02-service-request-patient-view.json")["context"]
    del ctx["patientId"]
    assert_error(CONTEXT["patient-view"], ctx, "$", "required", "'patientId'")


@pytest.mark.parametrize("hook", ["order-select", "order-sign", "patient-view"])
@pytest.mark.parametrize("patient_id", ["", "a b", "x" * 65, "p/1"])
def test_patient_id_is_a_fhir_id_in_every_hook(hook, patient_id):
    ctx = fixture(f"hook-{hook}-r4.json" if hook != "patient-view" else "hook-patient-view-1.json")["context"]
    ctx["patientId"] = patient_id
    assert_error(CONTEXT[hook], ctx, "$.patientId", "pattern")


@pytest.mark.parametrize(
    "hook,user_id,ok",
    [
        ("order-select", "Practitioner/123", True),
        ("order-select", "PractitionerRole/abc-1.x", True),
        ("order-select", "Patient/123", False),
        ("order-select", "123", False),
        ("order-sign", "PractitionerRole/123", True),
        ("order-sign", "RelatedPerson/1", False),
        ("patient-view", "Practitioner/abc", True),
        ("patient-view", "PractitionerRole/123", True),
        ("patient-view", "Patient/123", True),
        ("patient-view", "RelatedPerson/rp1", True),
        ("patient-view", "Device/1", False),
        ("patient-view", "Practitioner/", False),
    ],
)
def test_user_id_types(hook, user_id, ok):
    name = {
        "order-select": "hook-order-select-r4.json",
        "order-sign": "hook-order-sign-r4.json",
    }.get(hook, "hook-patient-view-1.json")
    ctx = fixture(name)["context"]
    ctx["userId"] = user_id
    if ok:
        assert_valid(CONTEXT[hook], ctx)
    else:
        assert_error(CONTEXT[hook], ctx, "$.userId", "pattern")


# --------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["01-discovery-example.json", "27-extensions.json"])
def test_spec_discovery_examples_validate(name):
    assert_valid(DISCOVERY, fixture(name))


def test_discovery_empty_services_allowed():
    assert_valid(DISCOVERY, {"services": []})


@pytest.mark.parametrize("field", ["hook", "id", "description"])
def test_discovery_service_required_fields(field):
    body = fixture("01-discovery-example.json")
    del body["services"][1][field]
    assert_error(DISCOVERY, body, "$.services[1]", "required", repr(field))


def test_discovery_prefetch_values_are_strings():
    body = fixture("01-discovery-example.json")
    body["services"][0]["prefetch"]["patientToGreet"] = {"resourceType": "Patient"}
    assert_error(DISCOVERY, body, "$.services[0].prefetch.patientToGreet", "type")


def test_discovery_id_is_a_path_segment():
    body = fixture("01-discovery-example.json")
    body["services"][0]["id"] = "a/b"
    assert_error(DISCOVERY, body, "$.services[0].id", "pattern")


# --------------------------------------------------------------------------
# feedback
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "19-example-suggestion-accepted.json",
        "20-example-overridden-guidance-without-overridereason.json",
        "21-example-overridden-guidance-with-overridereason.json",
    ],
)
def test_spec_feedback_examples_validate(name):
    assert_valid(FEEDBACK, fixture(name))


def test_feedback_accepted_without_accepted_suggestions():
    body = fixture("19-example-suggestion-accepted.json")
    del body["feedback"][0]["acceptedSuggestions"]
    assert_error(FEEDBACK, body, "$.feedback[0]", "required", "'acceptedSuggestions'")


def test_feedback_outcome_maybe():
    body = fixture("20-example-overridden-guidance-without-overridereason.json")
    body["feedback"][0]["outcome"] = "maybe"
    assert sites(FEEDBACK, body) == {("$.feedback[0].outcome", "enum")}


@pytest.mark.parametrize(
    "reason",
    [
        # CDS Hooks 2.0 OverrideReason
        {
            "reason": {
                "code": "d7ecf885",
                "system": "https://example.com/cds-hooks/override-reason-system",
            },
            "userComment": "A comment entered by the clinician.",
        },
        {
            "reason": {
                "code": "d7ecf885",
                "system": "https://example.com/x",
                "display": "Patient refused",
            }
        },
        {"userComment": "Only a comment."},
        # pre-2.0 bare Coding
        {
            "code": "d7ecf885",
            "system": "https://example.com/x",
            "display": "Patient refused",
        },
        {"code": "d7ecf885", "system": "https://example.com/x"},
    ],
    ids=[
        "2.0-reason+comment",
        "2.0-reason-with-display",
        "2.0-comment-only",
        "coding",
        "coding-no-display",
    ],
)
def test_feedback_override_reason_shapes_accepted(reason):
    body = fixture("21-example-overridden-guidance-with-overridereason.json")
    body["feedback"][0]["overrideReason"] = reason
    assert_valid(FEEDBACK, body)


@pytest.mark.parametrize(
    "reason",
    [
        {},
        {"reason": {"code": "x"}},
        {"reason": {"code": "x", "system": "s"}, "code": "x", "system": "s"},
        {"code": "x"},
        {"userComment": ""},
        "Patient refused",
        None,
    ],
    ids=[
        "empty",
        "reason-without-system",
        "mixed-shapes",
        "coding-without-system",
        "empty-comment",
        "string",
        "null",
    ],
)
def test_feedback_override_reason_bad_shapes_rejected(reason):
    body = fixture("21-example-overridden-guidance-with-overridereason.json")
    body["feedback"][0]["overrideReason"] = reason
    assert_error(FEEDBACK, body, "$.feedback[0].overrideReason", "oneOf")


@pytest.mark.parametrize(
    "stamp,ok",
    [
        ("1985-04-12T23:20:50.52Z", True),
        ("2020-12-11T00:00:00+00:00", True),
        ("2020-12-11T00:00:00", False),
        ("2020-12-11", False),
        ("2020-13-11T00:00:00Z", False),
        ("11/12/2020 10:05", False),
    ],
)
def test_feedback_outcome_timestamp(stamp, ok):
    body = fixture("20-example-overridden-guidance-without-overridereason.json")
    body["feedback"][0]["outcomeTimestamp"] = stamp
    if ok:
        assert_valid(FEEDBACK, body)
    else:
        assert_error(FEEDBACK, body, "$.feedback[0].outcomeTimestamp", "pattern")


def test_feedback_array_must_not_be_empty_and_card_is_uuid():
    assert_error(FEEDBACK, {"feedback": []}, "$.feedback", "minItems")
    body = fixture("20-example-overridden-guidance-without-overridereason.json")
    body["feedback"][0]["card"] = "card-1"
    assert_error(FEEDBACK, body, "$.feedback[0].card", "pattern")


# --------------------------------------------------------------------------
# response: general spec shape
# --------------------------------------------------------------------------


def test_spec_response_example_validates_against_general_shape():
    body = fixture("17-response-example.json")
    assert_valid(SPEC_RESPONSE, body)
    spec_card = view(RESPONSE, "specCard")
    for card in body["cards"]:
        assert_valid(spec_card, card)


def test_spec_empty_response_example_validates():
    assert_valid(SPEC_RESPONSE, fixture("10-http-response.json"))
    assert_valid(RESPONSE, fixture("10-http-response.json"))


def test_spec_autolaunchable_example_lacks_required_indicator():
    # The spec's `autolaunchable` response example omits `indicator`, which the
    # Card table marks REQUIRED; the general shape follows the table.
    body = fixture("18-response-autolaunchable.json")
    assert sites(SPEC_RESPONSE, body) == {("$.cards[0]", "required")}
    body["cards"][0]["indicator"] = "info"
    assert_valid(SPEC_RESPONSE, body)


@pytest.mark.parametrize(
    "name,def_name,key",
    [
        ("11-source.json", "specSource", "source"),
        ("12-action.json", "specAction", None),
        ("13-action.json", "specAction", None),
        ("14-action.json", "specAction", None),
    ],
)
def test_spec_fragments_validate(name, def_name, key):
    body = fixture(name)
    assert_valid(view(RESPONSE, def_name), body[key] if key else body)


def test_spec_override_reasons_example_validates():
    schema = view(RESPONSE, "specOverrideReasonCoding")
    for coding in fixture("15-reasons-for-rejecting-a-card.json")["overrideReasons"]:
        assert_valid(schema, coding)
        assert_valid(view(RESPONSE, "strictCoding"), coding)


def test_spec_system_action_example_lacks_required_description():
    # The spec's systemActions example omits `description`, which the Action
    # table marks REQUIRED; the general shape follows the table.
    assert sites(SPEC_RESPONSE, fixture("16-system-action.json")) == {("$.systemActions[0]", "required")}


def test_spec_response_example_is_not_strict():
    # Example 17 is spec-valid but lacks what our profile adds.
    found = sites(RESPONSE, fixture("17-response-example.json"))
    assert ("$.cards[0].source", "required") in found  # no topic
    assert ("$.cards[1]", "required") in found  # no uuid, no detail
    assert ("$.cards[1].source", "required") in found  # no url / topic


def test_general_shape_rejects_empty_and_null():
    body = fixture("17-response-example.json")
    body["cards"][0]["detail"] = ""
    body["cards"][0]["links"][0]["label"] = None
    body["cards"][1]["overrideReasons"] = []
    found = sites(SPEC_RESPONSE, body)
    assert ("$.cards[0].detail", "minLength") in found
    assert ("$.cards[0].links[0].label", "type") in found
    assert ("$.cards[1].overrideReasons", "minItems") in found


def test_general_shape_override_reason_needs_display():
    body = fixture("17-response-example.json")
    del body["cards"][1]["overrideReasons"][0]["display"]
    assert_error(SPEC_RESPONSE, body, "$.cards[1].overrideReasons[0]", "required", "'display'")


def test_general_shape_create_action_needs_resource():
    action = fixture("12-action.json")
    del action["resource"]
    assert_error(view(RESPONSE, "specAction"), action, "$", "required", "'resource'")


# --------------------------------------------------------------------------
# response: lbp-cds strict profile (the schema root)
# --------------------------------------------------------------------------


def test_strict_response_validates():
    body = strict_response()
    assert_valid(RESPONSE, body)
    assert_valid(SPEC_RESPONSE, body)  # strict is a subset of the spec shape


def test_empty_cards_allowed_in_both():
    assert_valid(RESPONSE, {"cards": []})
    assert_valid(SPEC_RESPONSE, {"cards": []})


def test_cards_required():
    assert_error(
        RESPONSE,
        {"systemActions": strict_response()["systemActions"]},
        "$",
        "required",
        "'cards'",
    )


def test_card_summary_of_140_characters():
    body = strict_response()
    body["cards"][0]["summary"] = "x" * 139
    assert_valid(RESPONSE, body)
    body["cards"][0]["summary"] = "x" * 140
    assert sites(RESPONSE, body) == {("$.cards[0].summary", "maxLength")}
    assert sites(SPEC_RESPONSE, body) == {("$.cards[0].summary", "maxLength")}


def test_card_with_empty_detail_string():
    body = strict_response()
    body["cards"][0]["detail"] = ""
    assert sites(RESPONSE, body) == {("$.cards[0].detail", "minLength")}


def test_card_with_suggestions_but_no_selection_behavior():
    body = strict_response()
    del body["cards"][0]["selectionBehavior"]
    assert_error(RESPONSE, body, "$.cards[0]", "dependentRequired", "'selectionBehavior'")
    assert_error(SPEC_RESPONSE, body, "$.cards[0]", "dependentRequired", "'selectionBehavior'")


def test_card_selection_behavior_without_suggestions():
    body = strict_response()
    del body["cards"][0]["suggestions"]
    assert_error(RESPONSE, body, "$.cards[0]", "dependentRequired", "'suggestions'")


@pytest.mark.parametrize(
    "path,expected",
    [
        (("cards", 0, "detail"), "$.cards[0].detail"),
        (("cards", 0, "uuid"), "$.cards[0].uuid"),
        (("cards", 0, "indicator"), "$.cards[0].indicator"),
        (("cards", 0, "source", "topic"), "$.cards[0].source.topic"),
        (("cards", 0, "source", "topic", "display"), "$.cards[0].source.topic.display"),
        (
            ("cards", 0, "suggestions", 0, "isRecommended"),
            "$.cards[0].suggestions[0].isRecommended",
        ),
        (("cards", 0, "links", 1, "appContext"), "$.cards[0].links[1].appContext"),
        (
            ("cards", 0, "suggestions", 0, "actions", 1, "resource", "status"),
            "$.cards[0].suggestions[0].actions[1].resource.status",
        ),
        (("systemActions", 0, "resource", "id"), "$.systemActions[0].resource.id"),
    ],
)
def test_card_with_a_null_field(path, expected):
    body = strict_response()
    node = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = None
    found = sites(RESPONSE, body)
    assert found, "null was accepted"
    assert {p for p, _ in found} == {expected}
    assert {kw for _, kw in found} <= {"type", "enum"}


def test_null_anywhere_in_strict_response():
    # Exhaustively replace every value (at every depth) with null, one at a time.
    original = strict_response()
    paths = []

    def collect(node, prefix):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            paths.append((*prefix, key))
            collect(value, (*prefix, key))

    collect(original, ())
    assert len(paths) > 50
    for path in paths:
        body = copy.deepcopy(original)
        node = body
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = None
        assert not validator(RESPONSE).is_valid(body), f"null accepted at {path}"


@pytest.mark.parametrize(
    "url",
    [
        "/guideline/lbp",
        "guidelines.example.org/lbp",
        "ftp://example.org/x",
        "https://",
        "javascript:alert(1)",
    ],
)
def test_link_with_relative_or_non_http_url(url):
    body = strict_response()
    body["cards"][0]["links"][0]["url"] = url
    assert sites(RESPONSE, body) == {("$.cards[0].links[0].url", "pattern")}


def test_relative_link_url_is_spec_valid():
    body = strict_response()
    body["cards"][0]["links"][0]["url"] = "/guideline/lbp"
    assert_valid(SPEC_RESPONSE, body)


def test_strict_unknown_members_rejected():
    body = strict_response()
    body["cards"][0]["sumary"] = "typo"
    body["cards"][0]["extension"] = {"lbp-cds-content-version": "b7bb25d6194e"}  # on the source only
    body["cards"][0]["source"]["extension"]["com.example"] = 1
    body["cards"][0]["suggestions"][0]["actions"][0]["comment"] = "x"
    body["cards"][0]["links"][0]["autolaunchable"] = True
    body["extra"] = 1
    errors = {e.json_path: e for e in validator(RESPONSE).iter_errors(body)}
    expected = {
        "$": "'extra'",
        "$.cards[0]": "'sumary'",
        "$.cards[0].extension": "'lbp-cds-content-version'",
        "$.cards[0].source.extension": "'com.example'",
        "$.cards[0].suggestions[0].actions[0]": "'comment'",
        "$.cards[0].links[0]": "'autolaunchable'",
    }
    assert set(errors) == set(expected)
    for path, name in expected.items():
        assert errors[path].validator == "additionalProperties"
        assert name in errors[path].message
    # the general shape tolerates all of these
    assert_valid(SPEC_RESPONSE, body)


def test_strict_fhir_resource_may_carry_any_members():
    body = strict_response()
    body["systemActions"][0]["resource"]["meta"] = {"tag": [{"code": "lbp"}]}
    assert_valid(RESPONSE, body)


def test_strict_fhir_resource_without_resource_type_or_with_empty_values():
    body = strict_response()
    del body["systemActions"][0]["resource"]["resourceType"]
    body["cards"][0]["suggestions"][0]["actions"][1]["resource"]["code"]["coding"] = []
    found = sites(RESPONSE, body)
    assert ("$.systemActions[0].resource", "required") in found
    assert (
        "$.cards[0].suggestions[0].actions[1].resource.code.coding",
        "minItems",
    ) in found


@pytest.mark.parametrize("field", ["uuid", "summary", "detail", "indicator", "source"])
def test_strict_card_required_fields(field):
    body = strict_response()
    del body["cards"][0][field]
    assert_error(RESPONSE, body, "$.cards[0]", "required", repr(field))


def test_strict_source_extension_is_the_content_version():
    body = strict_response()
    body["cards"][0]["source"]["extension"] = {"lbp-cds-content-version": ""}
    assert sites(RESPONSE, body) == {("$.cards[0].source.extension['lbp-cds-content-version']", "minLength")}
    body["cards"][0]["source"]["extension"] = {"com.example.version": "1"}
    assert sites(RESPONSE, body) == {
        ("$.cards[0].source.extension", "required"),
        ("$.cards[0].source.extension", "additionalProperties"),
    }
    body["cards"][0]["source"]["extension"] = {}
    assert ("$.cards[0].source.extension", "minProperties") in sites(RESPONSE, body)
    assert ("$.cards[0].source.extension", "minProperties") in sites(SPEC_RESPONSE, body)  # spec: non-empty object


@pytest.mark.parametrize("field", ["label", "url", "topic", "extension"])
def test_strict_source_required_fields(field):
    body = strict_response()
    del body["cards"][0]["source"][field]
    assert_error(RESPONSE, body, "$.cards[0].source", "required", repr(field))


@pytest.mark.parametrize("field", ["system", "code", "display"])
def test_strict_topic_required_fields(field):
    body = strict_response()
    del body["cards"][0]["source"]["topic"][field]
    assert_error(RESPONSE, body, "$.cards[0].source.topic", "required", repr(field))
    if field == "display":
        assert_valid(SPEC_RESPONSE, body)  # display is optional on a spec topic


@pytest.mark.parametrize("field", ["code", "system", "display"])
def test_strict_override_reason_required_fields(field):
    body = strict_response()
    del body["cards"][0]["overrideReasons"][0][field]
    assert_error(RESPONSE, body, "$.cards[0].overrideReasons[0]", "required", repr(field))


@pytest.mark.parametrize("field", ["uuid", "label"])
def test_strict_suggestion_required_fields(field):
    body = strict_response()
    del body["cards"][0]["suggestions"][0][field]
    assert_error(RESPONSE, body, "$.cards[0].suggestions[0]", "required", repr(field))


def test_strict_uuids_are_uuids():
    body = strict_response()
    body["cards"][0]["uuid"] = "card-1"
    body["cards"][0]["suggestions"][0]["uuid"] = "s1"
    found = sites(RESPONSE, body)
    assert ("$.cards[0].uuid", "pattern") in found
    assert ("$.cards[0].suggestions[0].uuid", "pattern") in found


def test_strict_enums():
    body = strict_response()
    body["cards"][0]["indicator"] = "hard-stop"
    body["cards"][0]["selectionBehavior"] = "all"
    body["cards"][0]["links"][0]["type"] = "relative"
    body["systemActions"][0]["type"] = "patch"
    found = sites(RESPONSE, body)
    for path in (
        "$.cards[0].indicator",
        "$.cards[0].selectionBehavior",
        "$.cards[0].links[0].type",
        "$.systemActions[0].type",
    ):
        assert (path, "enum") in found


def test_strict_empty_arrays_rejected():
    body = strict_response()
    body["cards"][0]["suggestions"] = []
    body["cards"][0]["links"] = []
    body["systemActions"] = []
    found = sites(RESPONSE, body)
    for path in ("$.cards[0].suggestions", "$.cards[0].links", "$.systemActions"):
        assert (path, "minItems") in found


def test_strict_app_context_only_on_smart_links():
    body = strict_response()
    body["cards"][0]["links"][0]["appContext"] = "x"
    assert sites(RESPONSE, body) == {("$.cards[0].links[0]", "not")}
    assert_valid(SPEC_RESPONSE, body)


def test_strict_delete_action_needs_resource_id_and_no_resource():
    body = strict_response()
    action = body["cards"][0]["suggestions"][0]["actions"][0]
    del action["resourceId"]
    assert_error(
        RESPONSE,
        body,
        "$.cards[0].suggestions[0].actions[0]",
        "required",
        "'resourceId'",
    )
    # the DEPRECATED string `resource` on a delete
    action["resource"] = "ServiceRequest/mri-1"
    action["resourceId"] = "ServiceRequest/mri-1"
    errors = list(validator(RESPONSE).iter_errors(body))
    assert [(e.json_path, e.validator) for e in errors] == [("$.cards[0].suggestions[0].actions[0]", "not")]
    assert "'resource'" in errors[0].message
    assert_valid(SPEC_RESPONSE, body)  # tolerated by the general shape
    # ...but a create/update resource must be an object even in the spec shape
    body["systemActions"][0]["resource"] = "ServiceRequest/mri-1"
    assert_error(SPEC_RESPONSE, body, "$.systemActions[0].resource", "type")
    assert_error(RESPONSE, body, "$.systemActions[0].resource", "type")


def test_strict_source_urls_absolute_http():
    body = strict_response()
    body["cards"][0]["source"]["url"] = "guidelines.example.org"
    body["cards"][0]["source"]["icon"] = "/icon.png"
    found = sites(RESPONSE, body)
    assert ("$.cards[0].source.url", "pattern") in found
    assert ("$.cards[0].source.icon", "pattern") in found


def test_each_error_reported_once():
    # strict* defs reuse the spec's own-level constraints instead of the whole
    # spec* tree, so an error is not reported once per layer.
    body = strict_response()
    card = body["cards"][0]
    card["summary"] = "x" * 140
    card["detail"] = ""
    del card["selectionBehavior"]
    card["source"]["label"] = None
    card["source"]["topic"]["code"] = ""
    card["suggestions"][0]["label"] = 1
    card["suggestions"][0]["actions"][0]["type"] = "patch"
    card["links"][0]["url"] = "/x"
    card["overrideReasons"][0]["display"] = ""
    body["systemActions"][0]["description"] = ""
    reported = [(e.json_path, e.validator, e.message) for e in validator(RESPONSE).iter_errors(body)]
    assert len(reported) == len(set(reported)), reported
    assert len(reported) == 10, reported


# --------------------------------------------------------------------------
# appointment-book context
# --------------------------------------------------------------------------

CRD_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "crd"


@pytest.mark.parametrize("name", ["ig-examples/CRDServiceRequest4.json", "test-kit/appointment_book_hook_request.json"])
def test_crd_appointment_book_requests_validate(name):
    body = json.loads((CRD_FIXTURES / name).read_text())
    assert_valid(REQUEST, body)
    assert_valid(CONTEXT["appointment-book"], body["context"])


def test_appointment_book_appointments_must_be_a_bundle_of_appointments():
    body = json.loads((CRD_FIXTURES / "ig-examples/CRDServiceRequest4.json").read_text())
    context = body["context"]
    schema = CONTEXT["appointment-book"]
    as_array = {**context, "appointments": [e["resource"] for e in context["appointments"]["entry"]]}
    assert_error(schema, as_array, "$.appointments", "type")  # the hook's STU3-era example shape
    other = copy.deepcopy(context)
    other["appointments"]["entry"][0]["resource"]["resourceType"] = "ServiceRequest"
    assert_error(schema, other, "$.appointments.entry[0].resource.resourceType", "const")
    by_patient = {**context, "userId": "Patient/123"}
    assert_valid(schema, by_patient)  # a patient booking their own appointment
