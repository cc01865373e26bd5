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
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"  # appointment reason (FOLLOWUP, EMERGENCY, ...)
NPI = "http://hl7.org/fhir/sid/us-npi"
SPINE_SURGEON = "207XS0117X"  # NUCC Orthopaedic Surgery of the Spine Physician
NEUROSURGEON = "207T00000X"  # NUCC Neurological Surgery Physician
HAND_SURGEON = "207XS0106X"  # NUCC Orthopaedic Hand Surgery
PRACTICE_NPI = "1407071236"
SURGEON_NPI = "9941339100"
ORTHO_REFERRAL = "308481009"  # Referral to orthopedic surgeon
NEURO_REFERRAL = "308482002"  # Referral to neurosurgeon
OXYCODONE_5MG = "1049621"  # oxycodone hydrochloride 5 MG Oral Tablet
SUBOXONE = "1010600"  # buprenorphine 2 MG / naloxone 0.5 MG Sublingual Film

ORDER_KEYS = ("patient", "conditions", "coverages", "encounters", "serviceRequests", "procedures")
BY_REFERENCE_KEYS = ("practitionerRoles", "practitioners")  # prefetched only when the record names them
_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def concept(code: str, system: str = ICD10, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def clinical_today() -> date:
    """The suite's clinical today (tests/clinical_date.py): what every app the tests start is told it is."""
    return TODAY


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
    performer_system: str = NUCC,
    performer_display: str | None = None,
    performer_reference: str | None = None,
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
        resource["performerType"] = concept(performer, performer_system, performer_display)
    if performer_reference:
        resource["performer"] = [{"reference": performer_reference}]
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


def appointment(
    *,
    specialty: str | None = SPINE_SURGEON,
    specialty_system: str = NUCC,
    service_type_text: str | None = None,
    appointment_type: str | None = None,
    appointment_type_text: str | None = None,
    reason: str | None = LBP,
    reason_system: str = ICD10,
    status: str = "proposed",
    start: str | None = "2026-12-10T09:00:00-06:00",
    based_on: str | None = None,
    surgeon: str | None = "Dr Ada Spine",
    surgeon_npi: str | None = SURGEON_NPI,
    practice: str | None = "Lakeside Spine Surgery",
    practice_npi: str | None = PRACTICE_NPI,
    aid: str | None = None,
) -> dict[str, Any]:
    """A proposed Appointment with a surgeon (a contained PractitionerRole naming the practice)."""
    resource: dict[str, Any] = {"resourceType": "Appointment", "id": aid or next_id("apt"), "status": status}
    contained: list[dict[str, Any]] = []
    participants: list[dict[str, Any]] = [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]
    if surgeon:
        practitioner: dict[str, Any] = {"resourceType": "Practitioner", "id": "surgeon", "name": [{"text": surgeon}]}
        if surgeon_npi:
            practitioner["identifier"] = [{"system": NPI, "value": surgeon_npi}]
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "id": "role",
            "practitioner": {"reference": "#surgeon"},
        }
        contained.append(practitioner)
        if practice:
            organization: dict[str, Any] = {"resourceType": "Organization", "id": "practice", "name": practice}
            if practice_npi:
                organization["identifier"] = [{"system": NPI, "value": practice_npi}]
            contained.append(organization)
            role["organization"] = {"reference": "#practice"}
        if specialty:
            role["specialty"] = [concept(specialty, specialty_system)]
        contained.append(role)
        participants.append({"actor": {"reference": "#role", "display": surgeon}, "status": "tentative"})
    if contained:
        resource["contained"] = contained
    if service_type_text:
        resource["serviceType"] = [{"text": service_type_text}]
    if appointment_type or appointment_type_text:
        kind: dict[str, Any] = concept(appointment_type, V2_0276) if appointment_type else {}
        if appointment_type_text:
            kind["text"] = appointment_type_text
        resource["appointmentType"] = kind
    if reason:
        resource["reasonCode"] = [concept(reason, reason_system)]
    if start:
        resource["start"] = start
    if based_on:
        resource["basedOn"] = [{"reference": based_on}]
    resource["participant"] = participants
    return resource


def medication_request(
    rxcui: str = OXYCODONE_5MG,
    *,
    status: str = "draft",
    reason: str | None = None,
    medication: str | None = None,
    contained_medication: bool = False,
    authored: str | None = None,
) -> dict[str, Any]:
    """A prescription coded inline, or by medicationReference: to Medication/`medication` (in the
    prefetch or on the FHIR server), or to a Medication contained in the request."""
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": next_id("mr"),
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
    }
    if contained_medication:
        resource["contained"] = [medication_resource(rxcui, "med")]
        resource["medicationReference"] = {"reference": "#med"}
    elif medication:
        resource["medicationReference"] = {"reference": f"Medication/{medication}"}
    else:
        resource["medicationCodeableConcept"] = concept(rxcui, RXNORM)
    if reason:
        resource["reasonCode"] = [concept(reason)]
    if authored:
        resource["authoredOn"] = authored
    return resource


def medication_resource(rxcui: str, mid: str) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": mid, "code": concept(rxcui, RXNORM)}


def practitioner_role(
    specialty: str,
    *,
    system: str = NUCC,
    rid: str | None = None,
    practitioner: str | None = None,
    display: str | None = None,
) -> dict[str, Any]:
    """A PractitionerRole with one specialty (NUCC by default), optionally for Practitioner/`practitioner`."""
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": rid or next_id("role"),
        "active": True,
        "specialty": [concept(specialty, system, display)],
    }
    if practitioner:
        role["practitioner"] = {"reference": f"Practitioner/{practitioner}"}
    return role


def practitioner(pid: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid, "name": [{"family": "Example", "given": ["Pat"]}]}


def contained_reason(referral: dict[str, Any], code: str, *, system: str = ICD10) -> dict[str, Any]:
    """The referral's reason as a Condition contained in it (reasonReference '#reason'), no reasonCode."""
    referral.pop("reasonCode", None)
    condition = {
        "resourceType": "Condition",
        "id": "reason",
        "subject": {"reference": "Patient/p1"},
        "code": concept(code, system),
    }
    referral["contained"] = [*referral.get("contained", []), condition]
    referral["reasonReference"] = [{"reference": "#reason"}]
    return referral


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
    # Resources the patient's data refers to (PractitionerRoles, Practitioners, Medications, Conditions
    # held elsewhere): prefetched under the key named, or only on the FHIR server when key is None.
    referenced: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    patient_elements: dict[str, Any] = field(default_factory=dict)  # more elements of the Patient resource

    def with_condition(
        self,
        code: str,
        *,
        system: str = ICD10,
        clinical_status: str | None = "active",
        onset: str | None = None,
        abated: str | None = None,
        recorded: str | None = None,
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
        if recorded:
            condition["recordedDate"] = recorded
        self.conditions.append(condition)
        return self

    def with_lbp(self) -> PatientRecordBuilder:
        return self.with_condition(LBP, cid="lbp")

    def with_coverage(
        self,
        sopt: str,
        *,
        status: str = "active",
        plan: str | None = None,
        order: int | None = None,
        payor: str | None = None,
        member_id: str | None = None,
    ) -> PatientRecordBuilder:
        coverage: dict[str, Any] = {
            "resourceType": "Coverage",
            "id": next_id("cov"),
            "status": status,
            "beneficiary": {"reference": f"Patient/{self.pid}"},
            "payor": [{"display": "Health plan"}],
            "type": concept(sopt, SOPT),
        }
        if order is not None:
            coverage["order"] = order
        if payor:
            coverage["payor"] = [{"identifier": {"system": "urn:oid:2.16.840.1.113883.6.300", "value": payor}}]
        if member_id:
            coverage["identifier"] = [
                {"type": concept("MB", "http://terminology.hl7.org/CodeSystem/v2-0203"), "value": member_id}
            ]
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
        participant: str | None = None,
    ) -> PatientRecordBuilder:
        """A visit; `participant` is 'PractitionerRole/x' or 'Practitioner/y' (resolved by reference)."""
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
        if participant:
            encounter["participant"] = [{"individual": {"reference": participant}}]
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

    def with_referenced(self, resource: dict[str, Any], *, prefetched_as: str | None = None) -> PatientRecordBuilder:
        """A resource the record refers to: in the prefetch under `prefetched_as`, else only on the server."""
        self.referenced.append((prefetched_as, resource))
        return self

    def patient_resource(self) -> dict[str, Any]:
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": self.pid,
            "name": [{"given": ["Pat"], "family": "Lumbar"}],
        }
        if self.birth_date:
            patient["birthDate"] = self.birth_date
        if self.postal_code:
            patient["address"] = [{"use": "home", "postalCode": self.postal_code}]
        return {**patient, **self.patient_elements}

    def with_patient(self, **elements: Any) -> PatientRecordBuilder:
        """More elements of the Patient resource (deceasedBoolean, deceasedDateTime…)."""
        self.patient_elements.update(elements)
        return self

    def prefetch(self) -> dict[str, Any]:
        extra: dict[str, list[dict[str, Any]]] = {}
        for key, resource in self.referenced:
            if key:
                extra.setdefault(key, []).append(resource)
        return {
            "patient": self.patient_resource(),
            "conditions": bundle(self.conditions + extra.pop("conditions", [])),
            "coverages": bundle(self.coverages),
            "encounters": bundle(self.encounters),
            "serviceRequests": bundle(self.service_requests),
            "medicationRequests": bundle(self.medication_requests + extra.pop("medicationRequests", [])),
            "procedures": bundle(self.procedures),
            **{key: bundle(resources) for key, resources in extra.items()},
        }

    def resources(self) -> list[dict[str, Any]]:
        """Everything the EHR's FHIR server holds for this patient (the record and what it refers to)."""
        return [
            self.patient_resource(),
            *self.conditions,
            *self.coverages,
            *self.encounters,
            *self.service_requests,
            *self.medication_requests,
            *self.procedures,
            *(resource for _key, resource in self.referenced),
        ]

    def request(self, hook: str, context: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        full = self.prefetch()
        keys = keys + tuple(k for k in full if k in BY_REFERENCE_KEYS)
        return {
            "hook": hook,
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/dr-1", "patientId": self.pid, **context},
            "prefetch": {k: copy.deepcopy(full[k]) for k in keys if k in full},
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

    def appointment_book(self, *appointments: dict[str, Any]) -> dict[str, Any]:
        return self.request("appointment-book", {"appointments": bundle(list(appointments))}, ORDER_KEYS)

    def patient_view(self) -> dict[str, Any]:
        keys = ("patient", "conditions", "encounters", "serviceRequests", "medicationRequests", "procedures")
        return self.request("patient-view", {}, keys)


def patient(
    age: int | None = 45, *, birth_date: str | None = None, postal_code: str | None = "55101"
) -> PatientRecordBuilder:
    if birth_date is None and age is not None:
        birth_date = birth_date_for_age(age)
    return PatientRecordBuilder(birth_date=birth_date, postal_code=postal_code)
