"""The test FHIR server (tests/fhir_server) answers the queries the service will send, as a real server would."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.fhir_server_fixture import FhirTestServer

# Until tests/conftest.py registers the plugin; harmless once it does (a plugin registers once).
# The plugin module is imported inside the tests, not here, so that pytest can assert-rewrite it first.
pytest_plugins = ["tests.fhir_server_fixture"]

pytestmark = pytest.mark.processes  # the Node server (tests/fhir_server)


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": f"Test-{pid}"}], "gender": "female"}


def _condition(pid: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


def _coverage(pid: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "status": status,
        "beneficiary": {"reference": f"Patient/{pid}"},
        "payor": [{"display": "Test payer"}],
    }


def _encounter(pid: str, status: str, day: int) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": f"2025-01-{day:02d}T09:00:00Z"},
    }


def _service_request(pid: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


def _medication_request(pid: str, status: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": f"Patient/{pid}"},
    }


def _records(pid: str) -> list[dict[str, Any]]:
    """p1's chart; other patients get the same shape so that leaks across patients would show."""
    return [
        _patient(pid),
        _condition(pid, "M54.50"),
        _condition(pid, "M51.16"),
        _coverage(pid, "active"),
        _coverage(pid, "cancelled"),
        *[_encounter(pid, "finished", day) for day in (2, 9, 16)],
        _encounter(pid, "in-progress", 23),
        _service_request(pid, "72148"),
        _service_request(pid, "97110"),
        _medication_request(pid, "active", "ibuprofen 600 mg"),
        _medication_request(pid, "stopped", "oxycodone 5 mg"),
    ]


@pytest.fixture
def charts(fresh_fhir_server: FhirTestServer) -> FhirTestServer:
    """Patients p1, p2 and p10 with their charts, as one transaction that refers to each patient by urn:uuid."""
    entries = []
    for pid in ("p1", "p2", "p10"):
        patient_urn = f"urn:uuid:{uuid.uuid4()}"
        for r in _records(pid):
            if r["resourceType"] == "Patient":
                entries.append(
                    {"fullUrl": patient_urn, "resource": r, "request": {"method": "PUT", "url": f"Patient/{pid}"}}
                )
                continue
            field = "beneficiary" if r["resourceType"] == "Coverage" else "subject"
            r[field] = {"reference": patient_urn}  # the server rewrites it to Patient/<pid>
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": r,
                    "request": {"method": "POST", "url": r["resourceType"]},
                }
            )
    result = fresh_fhir_server.load({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert result["type"] == "transaction-response"
    assert len(result["entry"]) == len(entries)
    return fresh_fhir_server


def many_charts(patients: int = 77, limit: int = 1000) -> list[dict[str, Any]]:
    """`limit` resources of other patients' charts, then p1's."""
    return [r for pid in [f"load{i}" for i in range(patients)] for r in _records(pid)][:limit] + _records("p1")


# The searches the service sends for one patient (the prefetch templates of hooks/service.py).
TYPICAL_QUERIES = (
    "Patient/p1",
    "Condition?patient=p1",
    "Coverage?patient=p1&status=active",
    "Encounter?patient=p1&status=finished",
    "ServiceRequest?patient=p1",
    "MedicationRequest?patient=p1&status=active",
)


def _search(server: FhirTestServer, query: str) -> dict[str, Any]:
    response = server.get(query)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return bundle


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def _subjects(resources: list[dict[str, Any]], field: str = "subject") -> set[str]:
    return {r[field]["reference"] for r in resources}


def test_read_patient(charts):
    response = charts.get("Patient/p1")
    assert response.status_code == 200
    assert response.json()["id"] == "p1"
    assert response.json()["name"][0]["family"] == "Test-p1"
    assert charts.get("Patient/nope").status_code == 404


def test_conditions_by_bare_patient_id_are_only_that_patients(charts):
    bundle = _search(charts, "Condition?patient=p1")
    conditions = _resources(bundle)
    assert bundle["total"] == 2
    assert sorted(c["code"]["coding"][0]["code"] for c in conditions) == ["M51.16", "M54.50"]
    assert _subjects(conditions) == {"Patient/p1"}  # not p2, not p10
    # the typed form and subject= give the same answer
    assert _search(charts, "Condition?patient=Patient/p1")["total"] == 2
    assert _subjects(_resources(_search(charts, "Condition?subject=p1"))) == {"Patient/p1"}
    assert _search(charts, "Condition?patient=nobody")["total"] == 0
    # absolute URLs on the server's own origin
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"{charts.base_url}/Condition/{entry['resource']['id']}"


def test_active_coverage(charts):
    coverages = _resources(_search(charts, "Coverage?patient=p1&status=active"))
    assert [c["status"] for c in coverages] == ["active"]
    assert _subjects(coverages, "beneficiary") == {"Patient/p1"}
    assert _search(charts, "Coverage?beneficiary=p1")["total"] == 2


def test_finished_encounters(charts):
    encounters = _resources(_search(charts, "Encounter?patient=p1&status=finished"))
    assert len(encounters) == 3
    assert {e["status"] for e in encounters} == {"finished"}
    assert _subjects(encounters) == {"Patient/p1"}


def test_service_and_medication_requests(charts):
    service_requests = _resources(_search(charts, "ServiceRequest?patient=p1"))
    assert sorted(s["code"]["coding"][0]["code"] for s in service_requests) == ["72148", "97110"]
    assert _subjects(service_requests) == {"Patient/p1"}
    meds = _resources(_search(charts, "MedicationRequest?patient=p1&status=active"))
    assert [m["medicationCodeableConcept"]["text"] for m in meds] == ["ibuprofen 600 mg"]


def test_paging_follows_next_links(charts):
    url = charts.url("Encounter?patient=p1&_count=2")
    pages, seen = 0, []
    while url:
        assert url.startswith(charts.origin + "/"), url
        response = charts._http.get(url, timeout=10)
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert bundle["total"] == 4
        assert len(bundle.get("entry", [])) <= 2
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        pages += 1
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert pages == 2
    assert len(seen) == len(set(seen)) == 4

    # a default page size applies to searches without _count
    charts.page_size(3)
    first = _search(charts, "Encounter?patient=p1")
    assert len(first["entry"]) == 3
    assert any(link["relation"] == "next" for link in first["link"])


def test_unknown_search_parameter_is_an_error_not_an_empty_result(charts):
    response = charts.get("Condition?status=active")  # Condition has clinical-status, not status
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert charts.get("Condition?subject.name=Test-p1").status_code == 400  # chained: not supported
    assert charts.get("MedicationRequest?patient=p1&_include=MedicationRequest:medication").status_code == 400
    assert charts.get("Nonsense?patient=p1").status_code == 404
    assert _search(charts, "Patient?_id=p1,p2")["total"] == 2


def test_bearer_token_required_when_set(charts):
    charts.require_token("s3cret")
    anonymous = charts._http.get(charts.url("Patient/p1"), timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    wrong = charts._http.get(charts.url("Patient/p1"), headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert charts.get("Patient/p1").status_code == 200  # get() sends the token
    assert charts._http.get(charts.url("metadata"), timeout=10).status_code == 200
    log = charts.requests_log()
    assert [(r["status"], r["authorization"]) for r in log[-4:-1]] == [
        (401, None),
        (401, "Bearer nope"),
        (200, "Bearer s3cret"),
    ]


def test_token_from_the_command_line(tmp_path):
    from tests.fhir_server_fixture import start_fhir_server

    server = start_fhir_server(tmp_path / "server.log", token="cli-token")
    try:
        assert server._http.get(server.url("Patient?_count=1"), timeout=10).status_code == 401
        assert server.get("Patient?_count=1").status_code == 200
    finally:
        server.stop()
    assert server.proc.returncode is not None


def test_delay_slows_only_that_type(charts):
    charts.delay("Encounter", 400)
    started = time.monotonic()
    _search(charts, "Encounter?patient=p1&status=finished")
    slow = time.monotonic() - started
    _search(charts, "Condition?patient=p1")
    charts.delay("Encounter", 0)
    _search(charts, "Encounter?patient=p1")
    # The server says which requests waited an injected delay, and how long: no timing of the others needed.
    delays = [(r["url"].split("?")[0].rsplit("/", 1)[-1], r["delayMs"]) for r in charts.requests_log()]
    assert delays[-3:] == [("Encounter", 400), ("Condition", 0), ("Encounter", 0)]
    # And the delayed one was waited for: a lower bound, which a busy machine can only exceed.
    assert slow >= 0.4


def test_injected_failure(charts):
    charts.fail("Coverage", 503, count=1)
    failed = charts.get("Coverage?patient=p1")
    assert failed.status_code == 503
    assert failed.json()["resourceType"] == "OperationOutcome"
    assert charts.get("Coverage?patient=p1").status_code == 200  # only once


def test_failed_transaction_loads_nothing(fresh_fhir_server):
    from tests.fhir_server_fixture import FhirServerError

    bad = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _condition("p1", "M54.50"), "request": {"method": "POST", "url": "Condition"}},
            {"resource": _patient("p1"), "request": {"method": "PUT", "url": "Patient/other-id"}},
        ],
    }
    with pytest.raises(FhirServerError, match="Incorrect resource ID"):
        fresh_fhir_server.load(bad)
    assert _search(fresh_fhir_server, "Condition?patient=p1")["total"] == 0


def test_searches_with_1000_stored_resources(fresh_fhir_server):
    """The service's typical searches among many patients' records still find only p1's.

    How long they take is a benchmark, not a test: tools/bench_fhir_server.py prints it.
    """
    fresh_fhir_server.load(many_charts())
    for query in TYPICAL_QUERIES:
        assert fresh_fhir_server.get(query).status_code == 200
    assert _search(fresh_fhir_server, "Encounter?patient=p1&status=finished")["total"] == 3
