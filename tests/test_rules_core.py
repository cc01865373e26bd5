"""The rules core: typed data decoded at one boundary, each target judged once, refusals only when the data
that could not be had could change the answer (issue 17).

The first part runs the rules as pure functions on a typed record (no HTTP, a few milliseconds); the second
calls the services as an EHR does."""

from __future__ import annotations

from typing import Any

from cds_service.pipeline.decode import decode
from hooks import rules as rules_module
from hooks.facts import build_facts
from hooks.model import Appointment, Resource
from hooks.record import PatientRecord
from hooks.rules import judge_bookings, judge_chart, judge_orders, settle
from tests.builders import (
    LBP,
    NUCC,
    SNOMED,
    SPINE_SURGEON,
    PatientRecordBuilder,
    appointment,
    clinical_today,
    medication_request,
    ortho_referral,
    patient,
    practitioner_role,
    service_request,
)
from tests.metrics_reading import metric

MSC = "msc-evaluation-first"
PN = "prior-notification-required"
PT = "physical-therapy-first-line"
OPIOID = "opioid-sparing-alternatives"
SELECT = "/cds-services/lbp-referral-select"
GENERIC_REFERRAL = "3457005"  # SNOMED CT Patient referral: says nothing of the specialty


def typed(raw: dict[str, Any]) -> Resource:
    decoded = decode(raw)
    assert decoded.resource is not None, decoded.problem
    return decoded.resource


def record_of(builder: PatientRecordBuilder) -> PatientRecord:
    """The builder's prefetch as the pipeline decodes it."""
    resources = []
    for value in builder.prefetch().values():
        raws = [e["resource"] for e in value["entry"]] if value["resourceType"] == "Bundle" else [value]
        resources += [typed(raw) for raw in raws]
    return PatientRecord.of(resources)


def topics_of(decisions) -> list[str]:
    return [d.topic for d in decisions]


# --- the rules as pure functions ------------------------------------------------------------------------


def test_a_spine_referral_for_an_adult_with_lbp_is_judged_msc_first(content):
    facts = build_facts(record_of(patient(45).with_lbp()), content.knowledge, clinical_today())
    judgement = judge_orders([typed(ortho_referral())], facts, content.knowledge)
    assert topics_of(judgement.decisions) == [MSC]
    [subject] = judgement.pn_subjects  # the referral the PN requirement is written on (order-sign)
    assert subject.msc_expected and not subject.at_booking


def test_medicare_advantage_turns_the_referral_into_prior_notification(content):
    record = record_of(patient(70).with_lbp().with_coverage("111"))
    facts = build_facts(record, content.knowledge, clinical_today())
    judgement = judge_orders([typed(ortho_referral())], facts, content.knowledge)
    assert topics_of(judgement.decisions) == [PN] and judgement.decisions[0].basis == "medicare-advantage"
    assert not judgement.pn_subjects[0].msc_expected


def test_a_child_is_out_of_scope_whatever_is_ordered(content):
    facts = build_facts(record_of(patient(12).with_lbp()), content.knowledge, clinical_today())
    orders = [typed(ortho_referral()), typed(medication_request(reason=LBP))]
    assert judge_orders(orders, facts, content.knowledge).decisions == ()


def test_the_chart_of_an_adult_with_lbp_and_no_recent_pt_gets_first_line_pt(content):
    facts = build_facts(record_of(patient(45).with_lbp()), content.knowledge, clinical_today())
    assert topics_of(judge_chart(facts, content.knowledge).decisions) == [PT]


def test_a_booking_is_judged_once_and_settled_with_the_pn_records(content):
    record = record_of(patient(45).with_lbp().with_coverage("5"))
    facts = build_facts(record, content.knowledge, clinical_today())
    booking = typed(appointment(aid="apt-1"))
    assert isinstance(booking, Appointment)
    judgement = judge_bookings([booking], facts, content.knowledge)
    assert judgement.decisions == () and [s.about for s in judgement.pn_subjects] == [booking]
    settled = settle(judgement, facts, content.knowledge)  # no PN on file
    assert topics_of(settled.decisions) == [PN, MSC]
    [assertion] = settled.assertions
    assert assertion.target is booking and assertion.state.value == "pn-required"


def test_the_pure_rules_take_milliseconds(content):
    """A judgement-level test needs no app, no HTTP and no database: the point of the typed record."""
    builder = patient(45).with_lbp()
    for days in range(200):
        builder.with_encounter(service_type=(NUCC, "207Q00000X"), days=days + 1, reason="I10")
    facts = build_facts(record_of(builder), content.knowledge, clinical_today())
    assert topics_of(judge_orders([typed(ortho_referral())], facts, content.knowledge).decisions) == [MSC]


# --- one boundary: wrong shapes, and the one repair -----------------------------------------------------


def test_an_appointment_containing_a_practitioner_whose_identifier_is_a_number_is_400_naming_the_path(client):
    """The one 5xx the fuzzer found before the typed boundary: a TypeError in the NPI lookup."""
    visit = appointment(aid="apt-1")
    visit["contained"] = [{"resourceType": "Practitioner", "id": "dr", "identifier": 1}]
    visit["participant"].append({"actor": {"reference": "#dr"}, "status": "accepted"})
    body = patient(45).with_lbp().appointment_book(visit)
    response = client.post("/cds-services/lbp-appointment-book", json=body)
    assert response.status_code == 400
    message = response.get_json()["issue"][0]["diagnostics"]
    assert message.startswith("A proposed appointment is not shaped as FHIR R4 says")
    assert "context/appointments/entry/0/resource/contained/0/identifier: expected an array" in message


def test_the_sandbox_single_reason_code_on_a_draft_opioid_gets_the_opioid_card(hooks, client):
    """The CDS Hooks Sandbox sends a draft MedicationRequest's reasonCode as one CodeableConcept."""
    order = medication_request(reason=LBP)
    order["reasonCode"] = order["reasonCode"][0]
    before = metric(client, "lbp_shapes_repaired_total", source="context", element="reasonCode")
    cards = hooks.select(patient(45).order_select(order))  # no LBP on the problem list: the reason decides
    assert [c["source"]["topic"]["code"] for c in cards] == [OPIOID]
    assert metric(client, "lbp_shapes_repaired_total", source="context", element="reasonCode") == before + 1


def test_a_prefetched_condition_whose_coding_is_one_object_is_read_as_a_list_of_one(hooks, client):
    body = patient(45).with_lbp().order_select(ortho_referral(reason=None))
    condition = body["prefetch"]["conditions"]["entry"][0]["resource"]
    condition["code"]["coding"] = condition["code"]["coding"][0]
    before = metric(client, "lbp_shapes_repaired_total", source="prefetch", element="coding")
    assert [c["source"]["topic"]["code"] for c in hooks.select(body)] == [MSC]  # LBP known: the referral is for it
    assert metric(client, "lbp_shapes_repaired_total", source="prefetch", element="coding") == before + 1


def test_an_extension_sent_as_one_object_is_not_repaired_it_is_echoed_unchanged(client):
    body = patient(45).with_lbp().order_select({**ortho_referral(), "extension": {"url": "urn:x"}})
    assert client.post(SELECT, json=body).status_code == 400


# --- judged once --------------------------------------------------------------------------------------


def counting(monkeypatch, name: str) -> list[str]:
    """The ids of the targets hooks.rules' `name` is called with, from now on."""
    calls: list[str] = []
    real = getattr(rules_module, name)

    def counted(target, facts, knowledge):
        calls.append(target.id)
        return real(target, facts, knowledge)

    monkeypatch.setattr(rules_module, name, counted)
    return calls


def test_one_order_sign_call_judges_its_referral_once(hooks, monkeypatch):
    calls = counting(monkeypatch, "referral_decision")
    record = patient(45).with_lbp().with_coverage("5")
    assert [c["source"]["topic"]["code"] for c in hooks.sign(record.order_sign(ortho_referral(rid="sr-1")))] == [MSC]
    assert calls == ["sr-1"]  # the card, the coverage information and the PN lookup read one judgement


def test_one_appointment_book_call_judges_its_visit_once(hooks, monkeypatch):
    calls = counting(monkeypatch, "is_initial_spine_visit_for_lbp")
    cards = hooks.book(patient(45).with_lbp().with_coverage("5").appointment_book(appointment(aid="apt-1")))
    assert [c["source"]["topic"]["code"] for c in cards] == [PN, MSC]
    assert calls == ["apt-1"]


# --- refused only when the missing data could change the answer -------------------------------------------


def test_a_spine_referral_whose_performer_cannot_be_had_is_answered_when_no_spine_surgeon_was_seen(client):
    """The referral's code says it is for spine surgery; with no earlier spine-surgeon visit, whoever
    performs it, the MSC step applies."""
    body = patient(45).with_lbp().order_select(ortho_referral(performer_reference="Practitioner/dr-unknown"))
    response = client.post(SELECT, json=body)  # prefetch only, no fhirServer: the performer cannot be had
    assert response.status_code == 200, response.get_json()
    assert [c["source"]["topic"]["code"] for c in response.get_json()["cards"]] == [MSC]


def test_a_referral_back_to_a_surgeon_whose_performer_cannot_be_had_gets_the_prior_notification_card(client):
    """Under a spine surgeon's care: the answer is the PN card, or none for that same surgeon. The PN card's
    own words ("needed only if this referral is to a surgical practice that has not yet seen the patient")
    cover both."""
    role = practitioner_role(SPINE_SURGEON, rid="role-seen", practitioner="dr-seen")
    record = patient(45).with_lbp().with_encounter(participant="PractitionerRole/role-seen", reason=LBP, days=60)
    record.with_referenced(role, prefetched_as="practitionerRoles")
    body = record.order_select(ortho_referral(performer_reference="Practitioner/dr-unknown"))
    response = client.post(SELECT, json=body)
    assert response.status_code == 200, response.get_json()
    [card] = response.get_json()["cards"]
    assert card["source"]["topic"]["code"] == PN
    assert "has not yet seen the patient" in card["detail"]


def test_a_generic_referral_whose_performer_decides_its_kind_is_still_refused_412(client):
    """A generic referral code says nothing of the specialty: the performer decides whether it is a spine
    referral at all, so a performer that cannot be had leaves the answer unknown."""
    referral = service_request(GENERIC_REFERRAL, system=SNOMED, performer_reference="PractitionerRole/r-unknown")
    response = client.post(SELECT, json=patient(45).with_lbp().order_select(referral))
    assert response.status_code == 412
    assert "referencedPractitioners" in response.get_json()["issue"][0]["diagnostics"]


# --- read once --------------------------------------------------------------------------------------------


def test_a_search_bundle_with_an_operation_outcome_entry_is_read_in_one_pass(hooks, client):
    """EHRs put warnings (search mode 'outcome') beside the results: they are no resource of the patient's."""
    body = patient(45).with_lbp().order_select(ortho_referral())
    warning = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "informational"}]}
    body["prefetch"]["conditions"]["entry"].append({"resource": warning, "search": {"mode": "outcome"}})
    before = metric(client, "lbp_resources_set_aside_total", key="conditions")
    assert [c["source"]["topic"]["code"] for c in hooks.select(body)] == [MSC]
    assert metric(client, "lbp_resources_set_aside_total", key="conditions") == before


def test_a_request_the_one_pass_cannot_type_is_read_member_by_member(hooks):
    body = patient(45).with_lbp().order_select(ortho_referral())
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": []}  # the EHR could not search
    body["prefetch"]["encounters"]["entry"].append({"resource": {"resourceType": "Observation", "id": "o1"}})
    response = hooks.client.post(SELECT, json=body)
    assert response.status_code == 412  # conditions not prefetched, and no fhirServer to fetch them from
    assert (
        "conditions (Condition?patient={{context.patientId}}): not prefetched"
        in response.get_json()["issue"][0]["diagnostics"]
    )
