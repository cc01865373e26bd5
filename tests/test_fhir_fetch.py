"""Fetching what the EHR did not prefetch (CDS Hooks 2.0.1 "FHIR Resource Access"), with fault injection."""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from cds_service.app import create_app
from cds_service.settings import Settings, SettingsError
from tests.builders import PatientRecordBuilder, bundle, medication_request, ortho_referral, patient, with_fhir_server
from tests.clinical_date import CLOCK
from tests.conftest import Hooks, topics

FHIR = "https://ehr.example.org/fhir/R4"
TOKEN = "secret-access-token-123"
SEARCHES = {
    "Condition": "conditions",
    "Coverage": "coverages",
    "Encounter": "encounters",
    "ServiceRequest": "service_requests",
    "MedicationRequest": "medication_requests",
    "Procedure": "procedures",
}


@pytest.fixture
def fetching(settings, content):
    """An app that may call FHIR; returns a factory so tests can change settings."""

    def make(**changes: Any) -> Hooks:
        configured = settings.model_copy(update=dict(fhir_allowlist=(FHIR,), **changes))
        return Hooks(create_app(configured, content=content, clock=CLOCK).test_client())

    return make


def serve(
    rsps: responses.RequestsMock, record: PatientRecordBuilder, *, pages: int = 1, broken: dict[str, Any] | None = None
) -> None:
    """Serve a test patient's record like a FHIR server: read Patient, search the rest.

    `broken` maps a resource type to what its searches answer instead: (status, body) or a callback.
    """
    rsps.add(responses.GET, f"{FHIR}/Patient/{record.pid}", json=record.patient_resource())
    for resource_type, attribute in SEARCHES.items():
        url = re.compile(rf"{re.escape(FHIR)}/{resource_type}\?.*")
        answer = (broken or {}).get(resource_type)
        if callable(answer):
            rsps.add_callback(responses.GET, url, callback=answer)
        elif answer is not None:
            status, body = answer
            rsps.add(responses.GET, url, status=status, body=body if isinstance(body, str) else json.dumps(body))
        else:
            rsps.add_callback(
                responses.GET, url, callback=paged_search(getattr(record, attribute), resource_type, pages)
            )


def fhir_server() -> responses.RequestsMock:
    return responses.RequestsMock(assert_all_requests_are_fired=False)


def paged_search(resources: list[dict[str, Any]], resource_type: str, pages: int):
    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(request.url).query)
        page = int(query.get("page", ["0"])[0])
        size = max(1, -(-len(resources) // pages))
        body = bundle(resources[page * size : (page + 1) * size])
        if page + 1 < pages:
            body["link"] = [{"relation": "next", "url": f"{FHIR}/{resource_type}?patient=p1&page={page + 1}"}]
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    return callback


def without_prefetch(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Drop these prefetch keys (all when none are named); the service may fetch from FHIR."""
    kept = tuple(key for key in body["prefetch"] if keys and key not in keys)
    return with_fhir_server(body, FHIR, TOKEN, kept)


def test_no_prefetch_at_all_fetches_everything_with_the_ehrs_token(fetching):
    record = patient(45).with_lbp()
    with fhir_server() as rsps:
        serve(rsps, record)
        cards = fetching().select(without_prefetch(record.order_select(ortho_referral())))
        assert topics(cards) == ["msc-evaluation-first"]
        assert {call.request.headers["Authorization"] for call in rsps.calls} == {f"Bearer {TOKEN}"}
        paths = sorted(urlsplit(call.request.url).path.rsplit("/", 1)[-1] for call in rsps.calls)
        assert paths == ["Condition", "Coverage", "Encounter", "Procedure", "ServiceRequest", "p1"]


def test_partial_prefetch_fetches_only_the_missing_keys(fetching):
    record = patient(45).with_lbp().with_coverage("111")
    with fhir_server() as rsps:
        serve(rsps, record)
        body = without_prefetch(record.order_select(ortho_referral()), "coverages")
        assert topics(fetching().select(body)) == ["prior-notification-required"]
        assert [urlsplit(c.request.url).path for c in rsps.calls] == ["/fhir/R4/Coverage"]
        assert parse_qs(urlsplit(rsps.calls[0].request.url).query) == {"patient": ["p1"], "status": ["active"]}


def test_null_prefetch_is_not_requeried(fetching):
    record = patient(45).with_lbp()
    with fhir_server() as rsps:
        serve(rsps, record)
        body = without_prefetch(record.order_select(ortho_referral()), "encounters")
        body["prefetch"]["coverages"] = None
        assert topics(fetching().select(body)) == ["msc-evaluation-first"]
        assert [urlsplit(c.request.url).path for c in rsps.calls] == ["/fhir/R4/Encounter"]


@pytest.mark.parametrize(
    "bad_value",
    [
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
        "<html><body>502 Bad Gateway</body></html>",
        {"error": "not a resource"},
    ],
)
def test_prefetch_that_is_not_a_resource_is_fetched(fetching, bad_value):
    record = patient(45).with_lbp().with_condition("G83.4")  # cauda equina: the fetched data matters
    with fhir_server() as rsps:
        serve(rsps, record)
        body = without_prefetch(record.order_select(ortho_referral()), "conditions")
        body["prefetch"]["conditions"] = bad_value
        assert fetching().select(body) == []
        assert [urlsplit(c.request.url).path for c in rsps.calls] == ["/fhir/R4/Condition"]


@pytest.mark.parametrize(
    "allowed",
    [
        pytest.param("https://other.example.org/fhir", id="another server"),
        pytest.param("https://ehr.example.org/fhir/R", id="a prefix that is not a path boundary"),
    ],
)
def test_server_not_on_the_allow_list_is_never_called(settings, content, allowed):
    record = patient(45).with_lbp()
    app = create_app(settings.model_copy(update=dict(fhir_allowlist=(allowed,))), content=content, clock=CLOCK)
    with fhir_server() as rsps:
        serve(rsps, record)
        body = without_prefetch(record.order_select(ortho_referral()), "conditions")
        response = app.test_client().post("/cds-services/lbp-referral-select", json=body)
        assert len(rsps.calls) == 0
    assert response.status_code == 412
    assert "allow-list" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("entry", "allowed"),
    [
        ("https://ehr.example.org/fhir", True),
        ("http://127.0.0.1:8081/fhir", True),
        ("http://localhost:8081", True),
        ("http://ehr.example.org/fhir", False),
        ("ftp://ehr.example.org", False),
    ],
)
def test_allow_list_requires_https_except_for_loopback(entry, allowed):
    env = {"CDS_FHIR_ALLOWLIST": entry}
    if allowed:
        assert Settings.from_env(env).fhir_allowlist == (entry,)
    else:
        with pytest.raises(SettingsError, match="CDS_FHIR_ALLOWLIST"):
            Settings.from_env(env)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"resourceType": "OperationOutcome", "issue": []}),
        (403, {"resourceType": "OperationOutcome", "issue": []}),
        (500, "Internal Server Error"),
        (200, "<html>login page</html>"),
    ],
)
def test_failing_essential_data_is_412_naming_it(fetching, status, body):
    record = patient(45).with_lbp()
    with fhir_server() as rsps:
        serve(rsps, record, broken={"Condition": (status, body)})
        request = without_prefetch(record.order_select(ortho_referral()), "conditions")
        response = fetching().client.post("/cds-services/lbp-referral-select", json=request)
    assert response.status_code == 412
    message = response.get_json()["issue"][0]["diagnostics"]
    assert message.startswith("Data this service needs could not be obtained: conditions (Condition?patient=")
    assert TOKEN not in message


def test_failing_coverage_refuses_an_msc_card_it_could_make_wrong(fetching):
    record = patient(45).with_lbp()
    with fhir_server() as rsps:
        serve(rsps, record, broken={"Coverage": (503, "Service Unavailable")})
        body = without_prefetch(record.order_select(ortho_referral()), "coverages")
        response = fetching().client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 412
    assert "coverages" in response.get_json()["issue"][0]["diagnostics"]


def test_failing_coverage_does_not_block_an_opioid_card(fetching):
    record = patient(45).with_lbp()
    with fhir_server() as rsps:
        serve(rsps, record, broken={"Coverage": (503, "Service Unavailable")})
        body = without_prefetch(record.order_select(medication_request()), "coverages")
        assert topics(fetching().select(body)) == ["opioid-sparing-alternatives"]


def test_failing_medications_on_patient_view_still_give_the_pt_card(fetching):
    record = patient(45).with_lbp()
    with fhir_server() as rsps:
        serve(rsps, record, broken={"MedicationRequest": (500, "Internal Server Error")})
        body = without_prefetch(record.patient_view(), "medicationRequests")
        assert topics(fetching().view(body)) == ["physical-therapy-first-line"]


def test_unreachable_server_is_412(fetching):
    record = patient(45).with_lbp()
    with fhir_server() as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/.*"), body=requests.ConnectionError("refused"))
        body = without_prefetch(record.order_select(ortho_referral()))
        response = fetching().client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 412
    assert "unreachable" in response.get_json()["issue"][0]["diagnostics"]


def test_a_hanging_server_is_abandoned_at_the_time_budget(fetching):
    record = patient(45).with_lbp()
    release, answered = threading.Event(), threading.Event()

    def hang(_request):
        """The Encounter search does not answer until the test has its response."""
        release.wait(timeout=60)
        answered.set()
        return 200, {}, json.dumps(bundle([]))

    with fhir_server() as rsps:
        serve(rsps, record, broken={"Encounter": hang})
        hooks = fetching(fhir_budget_ms=200)
        body = without_prefetch(record.order_select(ortho_referral()))
        try:
            response = hooks.client.post("/cds-services/lbp-referral-select", json=body)
            # Answered while the server still hangs: the service stopped waiting at its budget.
            assert not answered.is_set(), "the service waited for the hanging server past its budget"
        finally:
            release.set()
    assert response.status_code == 412
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert "encounters" in diagnostics
    assert re.search(r"encounters \([^)]*\): [^;]*within the time budget", diagnostics), diagnostics


def test_next_pages_are_followed(fetching):
    record = patient(45).with_lbp()
    for code in ("J45.909", "E11.9", "I10", "G83.4"):  # the red flag comes last, on the last page
        record.with_condition(code)
    with fhir_server() as rsps:
        serve(rsps, record, pages=3)
        body = without_prefetch(record.order_select(ortho_referral()), "conditions")
        assert fetching().select(body) == []
        assert len([c for c in rsps.calls if "/Condition" in c.request.url]) == 3


def test_more_pages_than_the_limit_is_incomplete_data(fetching):
    record = patient(45).with_lbp()
    for code in ("J45.909", "E11.9", "I10"):
        record.with_condition(code)
    with fhir_server() as rsps:
        serve(rsps, record, pages=4)
        body = without_prefetch(record.order_select(ortho_referral()), "conditions")
        response = fetching(fhir_page_limit=2).client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 412
    assert "more than 2 pages" in response.get_json()["issue"][0]["diagnostics"]


def test_a_next_link_to_another_server_is_not_followed(fetching):
    record = patient(45).with_lbp()
    evil = bundle(record.conditions)
    evil["link"] = [{"relation": "next", "url": "https://attacker.example.net/steal?page=2"}]
    with fhir_server() as rsps:
        serve(rsps, record, broken={"Condition": (200, evil)})
        body = without_prefetch(record.order_select(ortho_referral()), "conditions")
        response = fetching().client.post("/cds-services/lbp-referral-select", json=body)
        assert not [c for c in rsps.calls if "attacker" in c.request.url]
    assert response.status_code == 412


def test_responses_are_cached_per_server_query_and_token(fetching):
    record = patient(45).with_lbp()
    hooks = fetching()
    with fhir_server() as rsps:
        serve(rsps, record)
        hooks.select(without_prefetch(record.order_select(ortho_referral())))
        first = len(rsps.calls)
        hooks.sign(without_prefetch(record.order_sign(ortho_referral())))
        assert len(rsps.calls) == first, "order-sign after order-select refetched"
        other_token = without_prefetch(record.order_sign(ortho_referral()))
        other_token["fhirAuthorization"]["access_token"] = "another-users-token"
        hooks.sign(other_token)
        assert len(rsps.calls) == 2 * first


def test_cache_can_be_turned_off(fetching):
    record = patient(45).with_lbp()
    hooks = fetching(fhir_cache_seconds=0)
    with fhir_server() as rsps:
        serve(rsps, record)
        hooks.select(without_prefetch(record.order_select(ortho_referral())))
        hooks.select(without_prefetch(record.order_select(ortho_referral())))
        assert len(rsps.calls) == 12


def test_a_patient_id_that_is_no_fhir_id_never_reaches_a_query(fetching):
    """Every hook's patientId is checked as a FHIR id (issue 20): 'a b/c' is refused before any fetch."""
    record = patient(45).with_lbp()
    record.pid = "a b/c"
    with fhir_server() as rsps:
        rsps.add(responses.GET, f"{FHIR}/Condition", json=bundle(record.conditions))
        body = without_prefetch(record.patient_view(), "conditions")
        assert fetching().client.post("/cds-services/lbp-patient-view", json=body).status_code == 400
        assert not rsps.calls


def test_context_values_are_url_encoded_in_queries():
    """Defence in depth behind the schemas: a value put into a query template is percent-encoded."""
    from cds_service.pipeline.prefetch import render_template

    assert render_template("Condition?patient={{context.patientId}}", {"patientId": "a b/c"}) == (
        "Condition?patient=a%20b%2Fc"
    )


def test_fetch_log_names_the_key_without_token_or_patient_id(fetching, caplog):
    record = patient(45).with_lbp()
    with fhir_server() as rsps, caplog.at_level(logging.INFO):
        serve(rsps, record)
        fetching().select(without_prefetch(record.order_select(ortho_referral()), "conditions"))
    lines = [r.getMessage() for r in caplog.records if r.name == "lbp_cds.fhir"]
    assert len(lines) == 1
    assert "key=conditions query=Condition?patient={{context.patientId}} status=200" in lines[0]
    assert "prefetch_fallbacks=1" in lines[0]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in everything and "patient=p1" not in everything
