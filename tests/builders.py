"""Builders for test patients and CDS Hooks requests, so tests read like the requirements:

patient(age=45).with_condition(LBP).referral_select(ortho_referral())
"""

from __future__ import annotations

import copy
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from tests.clinical_date import TODAY

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
NUCC = "http://nucc.org/provider-taxonomy"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SOPT = "https://nahdo.org/sopt"
CPT = "http://www.ama-assn.org/go/cpt"

LBP = "M54.50"  # Low back pain, unspecified
ORTHO_REFERRAL = "308481009"  # Referral to orthopedic surgeon
NEURO_REFERRAL = "308482002"  # Referral to neurosurgeon
OXYCODONE_5MG = "1049621"  # oxycodone hydrochloride 5 MG Oral Tablet
SUBOXONE = "1010600"  # buprenorphine 2 MG / naloxone 0.5 MG Sublingual Film

ORDER_KEYS = ("patient", "conditions", "coverages", "encounters", "serviceRequests", "procedures")
_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def concept(code: str, system: str = ICD10, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def days_ago(days: int) -> str:
    """`days` before the suite's clinical today (tests/clinical_date.py), as the app's clock counts."""
    return (TODAY - timedelta(days=days)).isoformat()


def birth_date_for_age(age: int) -> str:
    """The latest birth date of someone who is `age` on the suite's clinical today: born `age` years ago today.

    On 29 February, when that year had none, 28 February: the day after, 1 March, is still a year younger.
    """
    try:
        return TODAY.replace(year=TODAY.year - age).isoformat()
    except ValueError:  # 29 February
        return date(TODAY.year - age, 2, 28).isoformat()


def with_fhir_server(body: dict[str, Any], server: str, token: str, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request as an EHR sends it when it prefetches only `keep` and lets the service fetch the rest."""
    body["prefetch"] = {key: value for key, value in body["prefetch"].items() if key in keep}
    body["fhirServer"] = server
    body["fhirAuthorization"] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "lbp-cds",
    }
    return body


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def service_request(
    code: str | None = ORTHO_REFERRAL,
    *,
    system: str = SNOMED,
    performer: str | None = None,
    text: str | None = None,
    reason: str | None = LBP,
    reason_system: str = ICD10,
    reason_reference: str | None = None,
    priority: str | None = None,
    status: str = "draft",
    authored: str | None = None,
    rid: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": rid or next_id("sr"),
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
    }
    code_concept: dict[str, Any] = concept(code, system) if code else {}
    if text:
        code_concept["text"] = text
    if code_concept:
        resource["code"] = code_concept
    if performer:
        resource["performerType"] = concept(performer, NUCC)
    if reason:
        resource["reasonCode"] = [concept(reason, reason_system)]
    if reason_reference:
        resource["reasonReference"] = [{"reference": reason_reference}]
    if priority:
        resource["priority"] = priority
    if authored:
        resource["authoredOn"] = authored
    return resource


def ortho_referral(**kwargs: Any) -> dict[str, Any]:
    return service_request(ORTHO_REFERRAL, **kwargs)


def medication_request(
    rxcui: str = OXYCODONE_5MG, *, status: str = "draft", reason: str | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": next_id("mr"),
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": concept(rxcui, RXNORM),
    }
    if reason:
        resource["reasonCode"] = [concept(reason)]
    return resource


@dataclass
class PatientRecordBuilder:
    """A patient record, built step by step, rendered as prefetch."""

    birth_date: str | None
    postal_code: str | None = "55101"
    pid: str = "p1"
    conditions: list[dict[str, Any]] = field(default_factory=list)
    coverages: list[dict[str, Any]] = field(default_factory=list)
    encounters: list[dict[str, Any]] = field(default_factory=list)
    service_requests: list[dict[str, Any]] = field(default_factory=list)
    medication_requests: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)

    def with_condition(
        self,
        code: str,
        *,
        system: str = ICD10,
        clinical_status: str | None = "active",
        onset: str | None = None,
        abated: str | None = None,
        cid: str | None = None,
    ) -> PatientRecordBuilder:
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "id": cid or next_id("cond"),
            "subject": {"reference": f"Patient/{self.pid}"},
            "code": concept(code, system),
        }
        if clinical_status:
            condition["clinicalStatus"] = concept(
                clinical_status, "http://terminology.hl7.org/CodeSystem/condition-clinical"
            )
        if onset:
            condition["onsetDateTime"] = onset
        if abated:
            condition["abatementDateTime"] = abated
        self.conditions.append(condition)
        return self

    def with_lbp(self) -> PatientRecordBuilder:
        return self.with_condition(LBP, cid="lbp")

    def with_coverage(self, sopt: str, *, status: str = "active", plan: str | None = None) -> PatientRecordBuilder:
        coverage: dict[str, Any] = {
            "resourceType": "Coverage",
            "id": next_id("cov"),
            "status": status,
            "beneficiary": {"reference": f"Patient/{self.pid}"},
            "payor": [{"display": "Health plan"}],
            "type": concept(sopt, SOPT),
        }
        if plan:
            coverage["class"] = [
                {
                    "type": concept("plan", "http://terminology.hl7.org/CodeSystem/coverage-class"),
                    "value": plan,
                }
            ]
        self.coverages.append(coverage)
        return self

    def with_encounter(
        self,
        *,
        service_type: tuple[str, str] | None = None,
        type_code: tuple[str, str] | None = None,
        days: int = 30,
        status: str = "finished",
        reason: str | None = None,
        reason_reference: str | None = None,
    ) -> PatientRecordBuilder:
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": next_id("enc"),
            "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{self.pid}"},
            "period": {"start": days_ago(days), "end": days_ago(days)},
        }
        if service_type:
            encounter["serviceType"] = concept(service_type[1], service_type[0])
        if type_code:
            encounter["type"] = [concept(type_code[1], type_code[0])]
        if reason:
            encounter["reasonCode"] = [concept(reason)]
        if reason_reference:
            encounter["reasonReference"] = [{"reference": reason_reference}]
        self.encounters.append(encounter)
        return self

    def with_service_request(self, request: dict[str, Any]) -> PatientRecordBuilder:
        self.service_requests.append(request)
        return self

    def with_procedure(
        self, code: tuple[str, str], *, days: int = 30, status: str = "completed"
    ) -> PatientRecordBuilder:
        self.procedures.append(
            {
                "resourceType": "Procedure",
                "id": next_id("proc"),
                "status": status,
                "subject": {"reference": f"Patient/{self.pid}"},
                "code": concept(code[1], code[0]),
                "performedDateTime": days_ago(days),
            }
        )
        return self

    def with_medication(self, request: dict[str, Any]) -> PatientRecordBuilder:
        self.medication_requests.append(request)
        return self

    def patient_resource(self) -> dict[str, Any]:
        patient: dict[str, Any] = {"resourceType": "Patient", "id": self.pid}
        if self.birth_date:
            patient["birthDate"] = self.birth_date
        if self.postal_code:
            patient["address"] = [{"use": "home", "postalCode": self.postal_code}]
        return patient

    def prefetch(self) -> dict[str, Any]:
        return {
            "patient": self.patient_resource(),
            "conditions": bundle(self.conditions),
            "coverages": bundle(self.coverages),
            "encounters": bundle(self.encounters),
            "serviceRequests": bundle(self.service_requests),
            "medicationRequests": bundle(self.medication_requests),
            "procedures": bundle(self.procedures),
        }

    def request(self, hook: str, context: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        full = self.prefetch()
        return {
            "hook": hook,
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/dr-1", "patientId": self.pid, **context},
            "prefetch": {k: copy.deepcopy(full[k]) for k in keys},
        }

    def order_select(self, *orders: dict[str, Any], selections: list[str] | None = None) -> dict[str, Any]:
        keys = ORDER_KEYS
        context = {
            "selections": selections or [f"{orders[0]['resourceType']}/{orders[0]['id']}"],
            "draftOrders": bundle(list(orders)),
        }
        return self.request("order-select", context, keys)

    def order_sign(self, *orders: dict[str, Any]) -> dict[str, Any]:
        keys = ORDER_KEYS
        return self.request("order-sign", {"draftOrders": bundle(list(orders))}, keys)

    def patient_view(self) -> dict[str, Any]:
        keys = ("patient", "conditions", "encounters", "serviceRequests", "medicationRequests", "procedures")
        return self.request("patient-view", {}, keys)


def patient(
    age: int | None = 45, *, birth_date: str | None = None, postal_code: str | None = "55101"
) -> PatientRecordBuilder:
    if birth_date is None and age is not None:
        birth_date = birth_date_for_age(age)
    return PatientRecordBuilder(birth_date=birth_date, postal_code=postal_code)
