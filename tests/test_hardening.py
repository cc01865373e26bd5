"""What a hostile tester sends: each reproducer of issue 11 gets a 4xx naming where the problem is, never
a 500; a malformed prefetched resource is set aside and counted, never read; the stores behave alike."""

from __future__ import annotations

import copy
import gc
import io
import json
import uuid
import weakref
from pathlib import Path
from typing import Any

import pytest

from cds_service.app import create_app
from cds_service.pipeline import validation
from cds_service.wiring import services_of
from tests.builders import medication_request, patient
from tests.databases import migrated
from tests.metrics_reading import metric

ROOT = Path(__file__).resolve().parent.parent
BASELINE = json.loads((ROOT / "guideline_data/examples/baseline-lbp-referral.json").read_text())
SELECT = "/cds-services/lbp-referral-select"
SIGN = "/cds-services/lbp-referral-sign"


def baseline() -> dict[str, Any]:
    return copy.deepcopy(BASELINE)


def post_raw(client, path: str, raw: bytes):
    return client.post(path, data=raw, content_type="application/json")


def diagnostics(response) -> str:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]["diagnostics"]


def entry_of(body: dict[str, Any], key: str, resource_type: str) -> dict[str, Any]:
    value = body["prefetch"][key]
    if value["resourceType"] == resource_type:
        return value
    return next(e["resource"] for e in value["entry"] if e["resource"]["resourceType"] == resource_type)


# --- deep nesting -----------------------------------------------------------------------------------


def test_a_body_nested_ten_thousand_levels_deep_is_400(client):
    response = post_raw(client, SELECT, b"[" * 10_000 + b"]" * 10_000)
    assert response.status_code == 400
    assert "nested too deeply" in diagnostics(response)


def test_a_reason_code_nested_900_levels_deep_inside_a_valid_request_is_400_naming_where(client):
    body = baseline()
    deep: Any = "x"
    for _ in range(900):
        deep = [deep]
    body["context"]["draftOrders"]["entry"][0]["resource"]["reasonCode"] = deep
    response = post_raw(client, SELECT, json.dumps(body).encode())
    assert response.status_code == 400
    assert diagnostics(response).startswith("context/draftOrders/entry/0/resource/reasonCode/")
    assert "nested more than 64 levels" in diagnostics(response)


def test_nesting_within_the_limit_is_still_read(hooks):
    body = baseline()
    reason = body["context"]["draftOrders"]["entry"][0]["resource"]["reasonCode"][0]
    reason["extension"] = [{"url": "urn:x", "extension": [{"url": "urn:y", "valueString": "ok"}]}]
    assert [c["source"]["topic"]["code"] for c in hooks.select(body)] == ["msc-evaluation-first"]


# --- resources not shaped as FHIR says ---------------------------------------------------------------


def test_a_draft_order_reason_code_that_is_a_number_is_400_naming_the_path(client):
    body = baseline()
    body["context"]["draftOrders"]["entry"][0]["resource"]["reasonCode"] = 5
    response = client.post(SELECT, json=body)
    assert response.status_code == 400
    assert "context/draftOrders/entry/0/resource/reasonCode: expected an array" in diagnostics(response)


def test_a_prefetched_condition_whose_coding_is_a_number_is_set_aside_and_its_key_counts_as_incomplete(client):
    body = baseline()
    entry_of(body, "conditions", "Condition")["code"]["coding"] = 1.5
    response = client.post(SELECT, json=body)
    assert response.status_code == 412  # a red flag could hide in it: no card is guessed
    message = diagnostics(response)
    assert "conditions (Condition?patient={{context.patientId}}): 1 resource(s) not shaped as FHIR R4" in message
    assert "code/coding: expected an array" in message
    assert metric(client, "lbp_resources_set_aside_total", key="conditions", source="prefetch") >= 1


def test_a_prefetched_bundle_whose_entry_is_a_number_counts_as_not_prefetched(client):
    body = baseline()
    body["prefetch"]["conditions"]["entry"] = 5
    response = client.post(SELECT, json=body)
    assert response.status_code == 412
    assert "conditions (Condition?patient={{context.patientId}}): not prefetched" in diagnostics(response)


def test_a_prefetched_patient_whose_address_is_a_number_is_set_aside(client):
    body = baseline()
    entry_of(body, "patient", "Patient")["address"] = 5
    response = client.post(SELECT, json=body)
    assert response.status_code == 412
    assert "patient (Patient/{{context.patientId}}): 1 resource(s) not shaped as FHIR R4" in diagnostics(response)


def test_a_malformed_resource_in_data_the_card_does_not_depend_on_leaves_the_card(hooks, client):
    record = patient(45).with_lbp().with_coverage("1")
    body = record.order_select(medication_request())
    body["prefetch"]["coverages"]["entry"][0]["resource"]["type"] = "Medicare"  # a CodeableConcept in FHIR
    before = metric(client, "lbp_resources_set_aside_total", key="coverages", source="prefetch")
    assert [c["source"]["topic"]["code"] for c in hooks.select(body)] == ["opioid-sparing-alternatives"]
    assert metric(client, "lbp_resources_set_aside_total", key="coverages", source="prefetch") == before + 1


def test_a_draft_order_id_that_is_no_fhir_id_is_400(client):
    body = baseline()
    body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = "has space"
    response = client.post(SELECT, json=body)
    assert response.status_code == 400
    assert "context/draftOrders/entry/0/resource/id" in diagnostics(response)


@pytest.mark.parametrize(
    ("key", "resource_type", "element"),
    [
        ("encounters", "Encounter", "participant"),
        ("coverages", "Coverage", "order"),
        ("serviceRequests", "ServiceRequest", "performer"),
        ("serviceRequests", "ServiceRequest", "contained"),
    ],
)
@pytest.mark.parametrize("wrong", [5, 1.5, "x", [5], [{"individual": 5, "code": 5, "specialty": 5}]])
def test_elements_read_to_resolve_references_and_coverage_are_shape_checked(client, key, resource_type, element, wrong):
    """Visits' participants, coverage order, performers and contained resources (read since the references
    rules) are shaped like the rest: a wrong one is set aside, never a 500."""
    record = patient(45).with_lbp().with_coverage("1").with_encounter(participant="PractitionerRole/r1")
    record.with_service_request(
        {"resourceType": "ServiceRequest", "id": "sr1", "status": "completed", "subject": {"reference": "Patient/p"}}
    )
    body = record.order_select(medication_request())
    entry_of(body, key, resource_type)[element] = wrong
    response = client.post(SELECT, json=body)
    assert response.status_code < 500, response.get_json()


# --- text that is not Unicode -----------------------------------------------------------------------


def test_a_lone_surrogate_in_hook_instance_is_400(client):
    raw = json.dumps(baseline()).replace(BASELINE["hookInstance"], "\\ud800").encode()
    response = post_raw(client, SELECT, raw)
    assert response.status_code == 400
    assert diagnostics(response).startswith("hookInstance: a string holds a lone UTF-16 surrogate")


def test_an_escaped_surrogate_pair_is_text_and_is_read(hooks):
    body = baseline()
    body["context"]["draftOrders"]["entry"][0]["resource"]["note"] = [{"text": "😀"}]
    assert hooks.select(json.loads(json.dumps(body, ensure_ascii=True))) != []  # sent as \ud83d\ude00


@pytest.mark.parametrize("where", ["card", "userComment"])
def test_a_lone_surrogate_in_feedback_is_400(client, where):
    item = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {"userComment": "fine"},
        "outcomeTimestamp": "2026-11-26T10:00:00Z",
    }
    raw = json.dumps({"feedback": [item]})
    raw = raw.replace(item["card"], "\\udfff") if where == "card" else raw.replace('"fine"', '"a\\ud800b"')
    response = post_raw(client, SELECT + "/feedback", raw.encode())
    assert response.status_code == 400
    assert "lone UTF-16 surrogate" in diagnostics(response)


# --- feedback at the edges ----------------------------------------------------------------------------


@pytest.fixture
def stored_client(settings, content, database_url):
    app = create_app(settings.model_copy(update=dict(database_url=migrated(database_url))), content=content)
    yield app.test_client()
    services_of(app).close()


def feedback(when: str = "2026-11-26T10:00:00Z", comment: str = "not now") -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "overrideReason": {"userComment": comment},
                "outcomeTimestamp": when,
            }
        ]
    }


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01"])
def test_a_feedback_time_beyond_the_calendar_in_utc_is_400_in_both_stores(stored_client, when):
    response = stored_client.post(SELECT + "/feedback", json=feedback(when))
    assert response.status_code == 400
    assert "feedback/0/outcomeTimestamp: in UTC this instant is outside the years 1 to 9999" in diagnostics(response)


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+01:00"])
def test_a_feedback_time_at_the_edge_of_the_calendar_is_stored_in_both_stores(stored_client, when):
    assert stored_client.post(SELECT + "/feedback", json=feedback(when)).status_code == 200


def test_a_nul_character_in_a_comment_is_400_in_both_stores(stored_client):
    response = stored_client.post(SELECT + "/feedback", json=feedback(comment="before\x00after"))
    assert response.status_code == 400
    assert "feedback/0/overrideReason" in diagnostics(response)
    assert stored_client.post(SELECT + "/feedback", json=feedback(comment="before after")).status_code == 200


# --- the cost of a refusal -----------------------------------------------------------------------------


def test_a_body_with_a_million_wrong_entries_is_refused_after_computing_only_the_errors_it_reports(client, monkeypatch):
    body = baseline()
    body["context"]["draftOrders"]["entry"] = [0] * 1_000_000
    raw = json.dumps(body).encode()
    assert len(raw) > 2_000_000
    computed = 0
    explain = validation.validator

    def counting(name: str):
        class Counting:
            def iter_errors(self, instance):
                nonlocal computed
                for error in explain(name).iter_errors(instance):
                    computed += 1
                    yield error

        return Counting()

    monkeypatch.setattr(validation, "validator", counting)
    response = post_raw(client, SELECT, raw)
    assert response.status_code == 400
    assert diagnostics(response).endswith("; and more")
    assert computed == validation.MAX_REPORTED_ERRORS + 1  # not a million


# --- the size limit, whatever the transfer encoding -----------------------------------------------------


@pytest.fixture
def small_client(settings, content):
    app = create_app(settings.model_copy(update=dict(max_body_bytes=4000)), content=content)
    yield app.test_client()
    services_of(app).close()


def test_a_streamed_body_over_the_limit_is_413_not_cut_short_and_accepted(small_client):
    raw = json.dumps(patient(45).with_lbp().patient_view()).encode() + b" " * 6000
    response = small_client.post(
        "/cds-services/lbp-patient-view",
        input_stream=io.BytesIO(raw),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert "larger than the limit of 4000 bytes" in diagnostics(response)


def test_a_body_exactly_at_the_limit_is_read(small_client):
    raw = json.dumps(patient(45).with_lbp().patient_view()).encode()
    raw += b" " * (4000 - len(raw))
    assert (
        small_client.post("/cds-services/lbp-patient-view", data=raw, content_type="application/json").status_code
        == 200
    )


# --- NaN, Infinity and huge numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_javascript_constants_are_not_json_and_are_400(client, constant):
    raw = json.dumps(baseline()).replace('"order-select"', constant, 1).encode()
    response = post_raw(client, SELECT, raw)
    assert response.status_code == 400
    assert "not valid JSON" in diagnostics(response)


def test_a_number_with_more_digits_than_python_reads_is_400(client):
    raw = json.dumps(baseline())[:-1] + ', "extension": {"x": ' + "9" * 5000 + "}}"
    response = post_raw(client, SELECT, raw.encode())
    assert response.status_code == 400


def test_the_request_as_read_is_freed_once_the_server_lets_go_of_the_answer_not_before(app, monkeypatch):
    """A large record's typed data takes milliseconds to free: the answer holds it until the server has taken
    the body (granian hands the body to its HTTP side, then drops the answer), so the answer is not kept
    waiting for it."""
    from werkzeug.test import EnvironBuilder

    from cds_service.web import hook_path

    read: list[weakref.ref[Any]] = []
    parse = hook_path.parse_hook_request

    def noting(raw: bytes) -> Any:
        request = parse(raw)
        read.append(weakref.ref(request))
        return request

    monkeypatch.setattr(hook_path, "parse_hook_request", noting)
    environ = EnvironBuilder(path="/cds-services/lbp-referral-select", method="POST", json=baseline()).get_environ()
    started: list[str] = []
    answer = app(environ, lambda status, headers, exc_info=None: started.append(status))
    assert started == ["200 OK"]
    assert isinstance(answer, list)  # a WSGI server that joins a list of bytes takes it so
    assert json.loads(b"".join(answer))["cards"][0]["source"]["topic"]["code"] == "msc-evaluation-first"
    gc.collect()
    assert read[0]() is not None, "the request should live as long as its answer"
    del answer
    gc.collect()
    assert read[0]() is None, "the request should be freed with its answer"
