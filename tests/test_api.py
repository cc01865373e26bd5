"""The HTTP contract an EHR integrator registers: discovery, errors, prefetch handling, pages."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from cds_service.app import create_app
from tests.builders import medication_request, ortho_referral, patient
from tests.clinical_date import CLOCK
from tests.conftest import SCHEMAS, assert_conformant

DISCOVERY_SCHEMA = Draft202012Validator(json.loads((SCHEMAS / "discovery.schema.json").read_text()))
CDS_HOOKS_2_TOKEN = re.compile(
    r"\{\{(context\.(patientId|userId|encounterId)"
    r"|userPractitionerId|userPractitionerRoleId|userPatientId|userRelatedPersonId)\}\}"
)


def outcome_message(response) -> str:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


# --- discovery ------------------------------------------------------------------------------------------


def test_discovery_lists_exactly_the_four_services(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.get_json()["services"]
    assert not list(DISCOVERY_SCHEMA.iter_errors(response.get_json()))
    assert {(s["id"], s["hook"]) for s in services} == {
        ("lbp-referral-select", "order-select"),
        ("lbp-referral-sign", "order-sign"),
        ("lbp-patient-view", "patient-view"),
        ("lbp-appointment-book", "appointment-book"),
    }
    for service in services:
        assert service["title"] and service["description"] and service["prefetch"]


def test_prefetch_templates_use_only_cds_hooks_2_tokens(client):
    for service in client.get("/cds-services").get_json()["services"]:
        for template in service["prefetch"].values():
            tokens = re.findall(r"\{\{[^}]*\}\}", template)
            assert tokens and all(CDS_HOOKS_2_TOKEN.fullmatch(t) for t in tokens), template


# --- errors ---------------------------------------------------------------------------------------------


def test_unknown_service_is_404_listing_the_services(client):
    response = client.post("/cds-services/lbp-nope", json={})
    assert response.status_code == 404
    message = outcome_message(response)
    assert "lbp-referral-select" in message
    assert "lbp-nope" not in message  # nothing the client sent is echoed


def test_wrong_hook_for_the_service_is_400(client):
    body = patient(45).with_lbp().patient_view()
    response = client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 400
    assert "hook: service 'lbp-referral-select' answers the 'order-select' hook only" in outcome_message(response)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda b: b.pop("hookInstance"), "'hookInstance' is a required property"),
        (lambda b: b.update(hookInstance="not-a-uuid"), "hookInstance"),
        (lambda b: b["context"].pop("selections"), "'selections' is a required property"),
        (lambda b: b["context"].update(selections=[]), "context/selections"),
        (lambda b: b["context"].update(draftOrders={"resourceType": "Patient"}), "context/draftOrders"),
        (lambda b: b["context"].update(selections=["ServiceRequest/ghost"]), "context/selections/0: not found"),
        (lambda b: b.update(fhirAuthorization={"access_token": "x"}), "fhirAuthorization"),
    ],
)
def test_invalid_requests_are_400_with_a_clear_message(client, mutate, expected):
    body = patient(45).with_lbp().order_select(ortho_referral())
    mutate(body)
    response = client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 400
    assert expected in outcome_message(response)


def test_body_that_is_not_json_is_400(client):
    response = client.post("/cds-services/lbp-patient-view", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in outcome_message(response)


def test_body_that_is_a_json_array_is_400(client):
    response = client.post("/cds-services/lbp-patient-view", json=[1, 2])
    assert response.status_code == 400
    assert "JSON object" in outcome_message(response)


def test_non_json_content_type_is_415(client):
    response = client.post("/cds-services/lbp-patient-view", data="hook=patient-view", content_type="text/plain")
    assert response.status_code == 415
    assert "application/json" in outcome_message(response)


def test_body_over_the_limit_is_413(settings, content, caplog):
    small = create_app(
        settings.model_copy(update=dict(max_body_bytes=2000)), content=content, clock=CLOCK
    ).test_client()
    body = patient(45).with_lbp().patient_view()
    body["prefetch"]["conditions"]["entry"] *= 50
    with caplog.at_level(logging.INFO, logger="lbp_cds"):
        response = small.post("/cds-services/lbp-patient-view", json=body)
    assert response.status_code == 413
    assert "2000 bytes" in outcome_message(response)
    # Logged as the 413 it is answered with (the hook call's line, and the refusal's).
    assert [r.status for r in caplog.records if getattr(r, "event", None) == "hook_call"] == [413]
    assert [r.kind for r in caplog.records if getattr(r, "event", None) == "refused"] == ["too-large"]


def test_get_on_a_service_is_405(client):
    response = client.get("/cds-services/lbp-patient-view")
    assert response.status_code == 405
    assert outcome_message(response)


def test_unexpected_failure_is_500_without_internals_and_the_app_keeps_serving(app, client, monkeypatch):
    def broken(*_args):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("cds_service.pipeline.call.build_facts", broken)
    body = patient(45).with_lbp().patient_view()
    response = client.post("/cds-services/lbp-patient-view", json=body)
    assert response.status_code == 500
    assert "secret" not in response.get_data(as_text=True)
    monkeypatch.undo()
    assert client.post("/cds-services/lbp-patient-view", json=body).status_code == 200


# --- prefetch -------------------------------------------------------------------------------------------


def test_missing_prefetch_without_a_fhir_server_is_412_naming_the_keys(client):
    body = patient(45).with_lbp().patient_view()
    del body["prefetch"]["conditions"]
    response = client.post("/cds-services/lbp-patient-view", json=body)
    assert response.status_code == 412
    message = outcome_message(response)
    assert "conditions (Condition?patient={{context.patientId}})" in message


def test_operation_outcome_in_prefetch_counts_as_missing(client):
    body = patient(45).with_lbp().patient_view()
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    response = client.post("/cds-services/lbp-patient-view", json=body)
    assert response.status_code == 412


def test_null_prefetch_means_no_data(hooks):
    body = patient(45).with_lbp().patient_view()
    body["prefetch"]["encounters"] = None
    body["prefetch"]["serviceRequests"] = None
    assert [c["source"]["topic"]["code"] for c in hooks.view(body)] == ["physical-therapy-first-line"]


def test_no_conditions_at_all_means_no_card(hooks):
    body = patient(45).with_lbp().patient_view()
    body["prefetch"]["conditions"] = None
    assert hooks.view(body) == []


def test_prefetch_bundle_with_outcome_entries_and_extra_resources_is_read(hooks):
    body = patient(45).with_lbp().order_select(medication_request())
    body["prefetch"]["conditions"]["entry"].append(
        {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "information"}]}}
    )
    assert [c["source"]["topic"]["code"] for c in hooks.select(body)] == ["opioid-sparing-alternatives"]


# --- links and pages ------------------------------------------------------------------------------------


def test_links_use_the_request_host_when_no_public_url_is_configured(settings, content):
    local = create_app(
        settings.model_copy(update=dict(public_base_url=None)), content=content, clock=CLOCK
    ).test_client()
    body = patient(45).with_lbp().order_select(ortho_referral())
    payload = local.post("/cds-services/lbp-referral-select", json=body, base_url="http://127.0.0.1:8080").get_json()
    assert_conformant(payload)
    urls = [link["url"] for link in payload["cards"][0]["links"]]
    assert "http://127.0.0.1:8080/msc/handout" in urls


@pytest.mark.parametrize("host", ["cds.internal:8080", "evil.example", "127.0.0.1.evil.example"])
def test_without_a_public_url_the_host_header_cannot_point_card_links_at_another_host(settings, content, host):
    local = create_app(settings.model_copy(update=dict(public_base_url=None)), content=content).test_client()
    body = patient(45).with_lbp().order_select(ortho_referral())
    trusted = local.post("/cds-services/lbp-referral-select", json=body, headers={"Host": "127.0.0.1:8080"})
    assert trusted.status_code == 200
    for _ in range(2):  # each time: the hook path remembers trusted hosts, never a refusal
        response = local.post("/cds-services/lbp-referral-select", json=body, headers={"Host": host})
        assert response.status_code == 400
        assert "Host header" in outcome_message(response)
        assert host not in response.get_data(as_text=True)


def test_with_a_public_url_any_host_header_gets_links_to_the_public_url(client):
    body = patient(45).with_lbp().order_select(ortho_referral())
    payload = client.post("/cds-services/lbp-referral-select", json=body, headers={"Host": "evil.example"}).get_json()
    assert {link["url"].split("/msc/")[0] for link in payload["cards"][0]["links"] if "/msc/" in link["url"]} == {
        "https://cds.example.org"
    }


def test_links_behind_a_trusted_proxy_use_the_forwarded_host(settings, content):
    proxied = create_app(
        settings.model_copy(update=dict(public_base_url=None, trusted_proxy_hops=1)), content=content, clock=CLOCK
    ).test_client()
    body = patient(45).with_lbp().order_select(ortho_referral())
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "cds.hospital.org"}
    payload = proxied.post("/cds-services/lbp-referral-select", json=body, headers=headers).get_json()
    assert "https://cds.hospital.org/msc/handout" in [link["url"] for link in payload["cards"][0]["links"]]


def test_handout_is_a_printable_page(client):
    response = client.get("/msc/handout")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<h1>Your visit to a Medical Spine Center</h1>" in page
    assert 'id="print"' in page and "/static/handout.js" in page  # the button's script is a file (CSP)
    assert "window.print()" in client.get("/static/handout.js").get_data(as_text=True)
    assert "@media print" in client.get("/static/pages.css").get_data(as_text=True)


def test_directory_filters_by_region_and_says_it_is_sample_data(client):
    page = client.get("/msc/directory?region=wisconsin").get_data(as_text=True)
    assert "Sample Spine Center Hudson" in page
    assert "Sample Spine Center Duluth" not in page
    assert "placeholders" in page
    everything = client.get("/msc/directory").get_data(as_text=True)
    assert "Sample Spine Center Duluth" in everything and "Sample Spine Center Hudson" in everything


def test_pages_carry_security_headers(client):
    response = client.get("/msc/handout")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_handout_markdown_is_rendered_without_raw_html(settings, content, tmp_path: Path):
    tampered = replace(content, handout_markdown="# Hi\n\n<script>alert(1)</script>")
    page = create_app(settings, content=tampered, clock=CLOCK).test_client().get("/msc/handout").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
