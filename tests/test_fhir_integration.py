"""End to end against a real FHIR R4 server (Medplum's router on 127.0.0.1): the same clinical cases
give the same cards with full prefetch, with partial prefetch and with none."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from cds_service.app import create_app
from tests.builders import (
    CPT,
    NUCC,
    PatientRecordBuilder,
    medication_request,
    medication_resource,
    ortho_referral,
    patient,
    practitioner_role,
    with_fhir_server,
)
from tests.clinical_date import CLOCK
from tests.conftest import Hooks, topics

TOKEN = "integration-token"

pytestmark = pytest.mark.processes  # the Node FHIR server (tests/fhir_server)


def record_resources(record: PatientRecordBuilder) -> list[dict[str, Any]]:
    return record.resources()


@dataclass(frozen=True)
class Case:
    build: Callable[[], PatientRecordBuilder]
    hook: str  # select, sign or view
    request: Callable[[PatientRecordBuilder], dict[str, Any]]
    expected: list[str]


def select_referral(record: PatientRecordBuilder) -> dict[str, Any]:
    return record.order_select(ortho_referral())


PN = ["prior-notification-required"]
MSC_VISIT = {"service_type": (NUCC, "208100000X"), "days": 30, "reason": "M54.50"}
CASES = {
    "baseline referral": Case(lambda: patient(45).with_lbp(), "select", select_referral, ["msc-evaluation-first"]),
    "medicare advantage": Case(lambda: patient(45).with_lbp().with_coverage("111"), "select", select_referral, PN),
    "msc done": Case(
        lambda: patient(45).with_lbp().with_encounter(**MSC_VISIT),
        "select",
        select_referral,
        ["prior-notification-required"],
    ),
    "cauda equina": Case(lambda: patient(45).with_lbp().with_condition("G83.4"), "select", select_referral, []),
    "opioid at signing": Case(
        lambda: patient(45).with_lbp(),
        "sign",
        lambda r: r.order_sign(ortho_referral(), medication_request()),
        ["msc-evaluation-first", "opioid-sparing-alternatives"],
    ),
    "chart open": Case(
        lambda: patient(45).with_lbp().with_medication(medication_request(status="active")),
        "view",
        lambda r: r.patient_view(),
        ["physical-therapy-first-line", "opioid-sparing-alternatives"],
    ),
    "recent pt": Case(
        lambda: patient(45).with_lbp().with_encounter(type_code=(CPT, "97161"), days=20),
        "view",
        lambda r: r.patient_view(),
        [],
    ),
    "child": Case(lambda: patient(12).with_lbp(), "view", lambda r: r.patient_view(), []),
    "msc visit by practitioner role": Case(
        lambda: (
            patient(45)
            .with_lbp()
            .with_referenced(practitioner_role("208100000X", rid="pmr-int"), prefetched_as="practitionerRoles")
            .with_encounter(days=40, reason="M54.50", participant="PractitionerRole/pmr-int")
        ),
        "select",
        select_referral,
        PN,
    ),
    "medicare advantage secondary": Case(
        lambda: patient(67).with_lbp().with_coverage("5", order=1).with_coverage("111", order=2),
        "select",
        select_referral,
        ["msc-evaluation-first"],
    ),
    "opioid by medication reference": Case(
        lambda: (
            patient(45)
            .with_lbp()
            .with_referenced(medication_resource("1049621", "oxy-int"), prefetched_as="medicationRequests")
            .with_medication(medication_request(medication="oxy-int", status="active"))
        ),
        "view",
        lambda r: r.patient_view(),
        ["physical-therapy-first-line", "opioid-sparing-alternatives"],
    ),
    "healed fracture": Case(
        lambda: patient(70).with_lbp().with_condition("S32.010D"),
        "view",
        lambda r: r.patient_view(),
        ["physical-therapy-first-line"],
    ),
}
PREFETCH_KEPT = {"full": None, "partial": ("patient", "conditions"), "none": ()}


@pytest.fixture
def hooks_on(fresh_fhir_server, settings, content) -> Hooks:
    fresh_fhir_server.require_token(TOKEN)
    configured = settings.model_copy(update=dict(fhir_allowlist=(fresh_fhir_server.base_url,), fhir_budget_ms=2000))
    return Hooks(create_app(configured, content=content, clock=CLOCK).test_client())


@pytest.mark.parametrize("mode", list(PREFETCH_KEPT))
@pytest.mark.parametrize("case", list(CASES))
def test_same_cards_whatever_the_ehr_prefetches(fresh_fhir_server, hooks_on, case, mode):
    chosen = CASES[case]
    record = chosen.build()
    record.pid = f"pat-{uuid.uuid4().hex[:12]}"
    for resource in record_resources(record)[1:]:
        for field in ("subject", "beneficiary"):
            if field in resource:
                resource[field] = {"reference": f"Patient/{record.pid}"}
    fresh_fhir_server.load(record_resources(record))

    body = chosen.request(record)
    kept = PREFETCH_KEPT[mode]
    if kept is not None:
        with_fhir_server(body, fresh_fhir_server.base_url, TOKEN, kept)
    cards = getattr(hooks_on, chosen.hook)(body)
    assert topics(cards) == chosen.expected

    fetched = [r for r in fresh_fhir_server.requests_log() if r["method"] == "GET"]
    if mode == "full":
        assert fetched == []
    else:
        assert fetched and all(r["status"] == 200 for r in fetched), fetched
        assert all(r["authorization"] == f"Bearer {TOKEN}" for r in fetched)
