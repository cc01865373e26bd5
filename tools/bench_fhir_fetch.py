"""Benchmark (not a test): a hook call that must fetch all 6 prefetch keys from a real FHIR server,
against the slowest single query. Parallel fetching should cost little more than the slowest query.

    .venv/bin/python tools/bench_fhir_fetch.py [--resources 50] [--rounds 30]

Starts the test FHIR server (tests/fhir_server, Node; `npm ci --prefix tests/fhir_server` first),
loads one patient, and times: each of the 6 searches alone, then the lbp-patient-view call without
prefetch (cache off), first with the server as fast as it is, then with injected per-type latency.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cds_service.app import create_app
from cds_service.settings import Settings
from tests.builders import CPT, NUCC, medication_request, patient, service_request, with_fhir_server
from tests.clinical_date import CLOCK
from tests.fhir_server_fixture import start_fhir_server

TOKEN = "bench-token"
QUERIES = {
    "patient": "Patient/p1",
    "conditions": "Condition?patient=p1",
    "encounters": "Encounter?patient=p1&status=finished",
    "serviceRequests": "ServiceRequest?patient=p1",
    "medicationRequests": "MedicationRequest?patient=p1&status=active",
    "procedures": "Procedure?patient=p1",
}
# Injected latency per resource type (ms), as a busy EHR FHIR server might answer.
LATENCY = {
    "Patient": 20,
    "Condition": 60,
    "Encounter": 90,
    "ServiceRequest": 40,
    "MedicationRequest": 50,
    "Procedure": 30,
}


def load_patient(server, per_type: int):
    record = patient(45).with_lbp()
    for i in range(per_type):
        record.with_condition("J45.909" if i % 2 else "I10")
        record.with_encounter(service_type=(NUCC, "207Q00000X"), days=100 + i)
        lab = service_request("58410-2", system="http://loinc.org", status="completed", reason=None)
        record.with_service_request(lab)
        record.with_medication(medication_request("197806", status="active"))
        record.with_procedure((CPT, "99213"), days=100 + i)
    resources = [record.patient_resource(), *record.conditions, *record.encounters]
    resources += [*record.service_requests, *record.medication_requests, *record.procedures]
    server.load(resources)
    return record


def median_ms(action, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(server, client, body, rounds: int) -> tuple[dict[str, float], float]:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    single = {
        key: median_ms(lambda q=query: session.get(server.url(q), headers=headers).raise_for_status(), rounds)
        for key, query in QUERIES.items()
    }

    def hook_call() -> None:
        response = client.post("/cds-services/lbp-patient-view", json=body)
        assert response.status_code == 200, response.get_json()

    return single, median_ms(hook_call, rounds)


def report(title: str, single: dict[str, float], hook_ms: float) -> None:
    slowest = max(single.values())
    print(f"\n{title}")
    for key, ms in single.items():
        print(f"  {key:<20} {ms:7.1f} ms alone")
    print(f"  {'sum of the 6':<20} {sum(single.values()):7.1f} ms (what fetching one after another would cost)")
    print(f"  {'slowest single':<20} {slowest:7.1f} ms")
    extra = f"slowest + {hook_ms - slowest:.1f} ms ({hook_ms / slowest:.2f}x)"
    print(f"  {'hook call (6 keys)':<20} {hook_ms:7.1f} ms  = {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=50, help="resources per type for the patient")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_fhir_server(Path(tmp) / "fhir-server.log")
        try:
            server.require_token(TOKEN)
            record = load_patient(server, args.resources)
            settings = Settings(
                require_jwt=False,
                public_base_url="https://cds.example.org",
                fhir_allowlist=(server.base_url,),
                fhir_budget_ms=5000,
                fhir_cache_seconds=0,
                fhir_page_limit=100,
                database_url=f"sqlite:///{tmp}/lbp-cds.sqlite3",  # nothing written into the checkout
                state_dir=Path(tmp) / "state",
            )
            client = create_app(settings, clock=CLOCK).test_client()  # the builders' clinical date
            body = with_fhir_server(record.patient_view(), server.base_url, TOKEN)
            print(f"Patient with {args.resources} resources of each type; medians of {args.rounds} rounds.")
            report("Server as fast as it is:", *measure(server, client, body, args.rounds))
            for resource_type, ms in LATENCY.items():
                server.delay(resource_type, ms)
            report(f"With injected latency {LATENCY}:", *measure(server, client, body, args.rounds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
