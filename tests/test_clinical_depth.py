"""Clinical depth, round 2 (issue 18): orders that are not being placed, deceased patients, references to other
servers. Each rule with its negative case; where data is fetched, in the prefetch and the fallback form."""

from __future__ import annotations

import pytest

from tests.builders import (
    CPT,
    LBP,
    SNOMED,
    SPINE_SURGEON,
    appointment,
    medication_request,
    ortho_referral,
    patient,
    practitioner_role,
    with_fhir_server,
)
from tests.conftest import topics
from tests.ehr_forms import FORMS, TOKEN

MSC = "msc-evaluation-first"
PN = "prior-notification-required"
PT = "physical-therapy-first-line"
OPIOID = "opioid-sparing-alternatives"
SIGN = "lbp-referral-sign"


# --- orders that are not being placed -------------------------------------------------------------------


@pytest.mark.parametrize("status", ["revoked", "entered-in-error", "completed"])
def test_a_spine_referral_that_is_not_being_placed_gets_no_card_and_no_coverage_information(hooks, status):
    body = patient(45).with_lbp().with_coverage("5").order_sign(ortho_referral(status=status))
    answer = hooks.answer(SIGN, body)
    assert answer["cards"] == [] and "systemActions" not in answer


@pytest.mark.parametrize("status", ["draft", "active"])
def test_a_spine_referral_being_placed_is_judged(hooks, status):
    body = patient(45).with_lbp().with_coverage("5").order_sign(ortho_referral(status=status))
    answer = hooks.answer(SIGN, body)
    assert topics(answer["cards"]) == [MSC] and len(answer["systemActions"]) == 1


@pytest.mark.parametrize("status", ["cancelled", "stopped", "entered-in-error", "completed"])
def test_a_prescription_that_is_not_being_placed_gets_no_opioid_card(hooks, status):
    assert hooks.select(patient(45).with_lbp().order_select(medication_request(status=status))) == []


def test_a_prescription_being_placed_gets_the_opioid_card(hooks):
    assert topics(hooks.select(patient(45).with_lbp().order_select(medication_request(status="draft")))) == [OPIOID]


# --- deceased patients ----------------------------------------------------------------------------------


DECEASED = [{"deceasedBoolean": True}, {"deceasedDateTime": "2026-10-02"}, {"deceasedDateTime": "2025"}]


@pytest.mark.parametrize("recorded", DECEASED, ids=["boolean", "date-time", "year"])
def test_a_deceased_patient_gets_no_card_at_any_hook(hooks, recorded):
    record = patient(60).with_lbp().with_coverage("5").with_medication(medication_request(status="active"))
    record.with_patient(**recorded)
    assert hooks.view(record.patient_view()) == []
    assert hooks.select(record.order_select(ortho_referral())) == []
    answer = hooks.answer(SIGN, record.order_sign(ortho_referral(), medication_request()))
    assert answer["cards"] == [] and "systemActions" not in answer
    booked = hooks.answer("lbp-appointment-book", record.appointment_book(appointment(aid="apt-1")))
    assert booked["cards"] == [] and "systemActions" not in booked


def test_a_patient_recorded_as_not_deceased_gets_the_cards(hooks):
    record = patient(60).with_lbp().with_patient(deceasedBoolean=False)
    assert topics(hooks.view(record.patient_view())) == [PT]
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


# --- references to other servers -------------------------------------------------------------------------


def visit_with(record, participant: str):
    """A finished LBP visit whose only participant is `participant`, and a spine surgeon's PractitionerRole
    with id spine-1 on the EHR's server."""
    record.with_referenced(practitioner_role(SPINE_SURGEON, rid="spine-1"))
    return record.with_encounter(days=60, reason=LBP, participant=participant)


@pytest.mark.processes
def test_a_visit_with_a_practitioner_on_another_server_is_never_credited_to_the_ehrs_namesake(ehr):
    """http://example.org/fhir/PractitionerRole/spine-1 is not the EHR's PractitionerRole/spine-1: it is data
    that cannot be had, and the MSC card could change with it, so the answer is refused, never guessed."""
    record = visit_with(patient(45).with_lbp(), "http://example.org/fhir/PractitionerRole/spine-1")
    ehr.server.load(record.resources())
    body = with_fhir_server(record.order_select(ortho_referral()), ehr.server.base_url, TOKEN)
    response = ehr.hooks.client.post("/cds-services/lbp-referral-select", json=body)
    assert response.status_code == 412
    message = response.get_json()["issue"][0]["diagnostics"]
    assert "referencedPractitioners" in message and "on another server than fhirServer" in message
    assert not any("spine-1" in url for url in ehr.fetched())


@pytest.mark.processes
def test_a_practitioner_on_another_server_decides_nothing_where_it_cannot_change_the_answer(ehr):
    record = visit_with(patient(45).with_lbp(), "http://example.org/fhir/PractitionerRole/spine-1")
    assert topics(ehr.cards("fallback", record, lambda r: r.order_select(medication_request()))) == [OPIOID]
    assert not any("spine-1" in url for url in ehr.fetched())


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_a_practitioner_on_the_ehrs_own_server_is_credited(ehr, form):
    """The same id under the request's fhirServer (absolute), or relative: the visit was with the EHR's spine
    surgeon, so the patient is under a spine surgeon's care (Prior Notification, not the MSC step)."""
    participant = (
        "PractitionerRole/spine-1" if form == "prefetch" else f"{ehr.server.base_url}/PractitionerRole/spine-1"
    )
    record = visit_with(patient(45).with_lbp(), participant)
    if form == "prefetch":
        record.referenced = [("practitionerRoles", resource) for _key, resource in record.referenced]
    assert topics(ehr.cards(form, record, lambda r: r.order_select(ortho_referral()))) == [PN]


# --- generic pain reasons -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason", ["G89.29", "G89.4", "R52", "g8929"], ids=["chronic", "syndrome", "unspecified", "undotted"]
)
def test_an_opioid_for_generic_pain_counts_as_for_lbp_beside_an_active_lbp_diagnosis(hooks, reason):
    assert topics(hooks.select(patient(45).with_lbp().order_select(medication_request(reason=reason)))) == [OPIOID]


def test_an_opioid_for_snomed_chronic_pain_counts_as_for_lbp_beside_an_active_lbp_diagnosis(hooks):
    order = medication_request()
    order["reasonCode"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]}]
    assert topics(hooks.select(patient(45).with_lbp().order_select(order))) == [OPIOID]


def test_a_spine_referral_for_pain_unspecified_counts_as_for_lbp_beside_an_active_lbp_diagnosis(hooks):
    assert topics(hooks.select(patient(45).with_lbp().order_select(ortho_referral(reason="R52")))) == [MSC]


@pytest.mark.parametrize("reason", ["G89.29", "R52"])
def test_generic_pain_without_an_active_lbp_diagnosis_is_not_low_back_pain(hooks, reason):
    assert hooks.select(patient(45).order_select(medication_request(reason=reason))) == []
    assert hooks.select(patient(45).order_select(ortho_referral(reason=reason))) == []


@pytest.mark.parametrize("reason", ["G89.3", "G89.22", "G89.11"], ids=["neoplasm", "post-thoracotomy", "trauma"])
def test_pain_with_a_cause_of_its_own_is_another_problem_even_beside_lbp(hooks, reason):
    assert hooks.select(patient(45).with_lbp().order_select(medication_request(reason=reason))) == []


# --- coverage that pays for no medical services --------------------------------------------------------


@pytest.mark.parametrize("other", ["313", "562", "122"], ids=["dental", "vision", "drug-benefit"])
def test_a_medicare_advantage_member_with_a_separate_dental_vision_or_drug_plan_is_exempt(hooks, other):
    record = patient(70).with_lbp().with_coverage("111").with_coverage(other)
    [card] = hooks.select(record.order_select(ortho_referral()))
    assert card["source"]["topic"]["code"] == PN and "Medicare Advantage" in card["detail"]


def test_a_medicare_advantage_coverage_beside_another_medical_coverage_of_unknown_order_does_not_exempt(hooks):
    record = patient(70).with_lbp().with_coverage("111").with_coverage("5")  # commercial medical coverage
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_a_dental_plan_alone_is_no_medicare_advantage(hooks):
    assert topics(hooks.select(patient(70).with_lbp().with_coverage("313").order_select(ortho_referral()))) == [MSC]


# --- Medicare Advantage as payers and members' apps code it ---------------------------------------------


def named_plan(record, name: str, sopt: str | None):
    """A coverage whose plan is named `name` (Coverage.class, as CARIN Blue Button sends it), typed `sopt`."""
    record.with_coverage(sopt or "1")
    coverage = record.coverages[-1]
    if sopt is None:
        del coverage["type"]
    coverage["class"] = [
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan"}]},
            "value": "H1234-001",
            "name": name,
        }
    ]
    return record


@pytest.mark.parametrize(
    ("name", "sopt"),
    [("Medicare Advantage PPO", None), ("MEDICARE PART C", "1"), ("Gold Medicare Advantage Plan", "19")],
    ids=["no-type", "medicare-category", "medicare-other"],
)
def test_a_plan_named_medicare_advantage_is_exempt_where_its_type_leaves_it_open(hooks, name, sopt):
    record = named_plan(patient(70).with_lbp(), name, sopt)
    [card] = hooks.select(record.order_select(ortho_referral()))
    assert card["source"]["topic"]["code"] == PN and "Medicare Advantage" in card["detail"]


@pytest.mark.parametrize("sopt", ["121", "5"], ids=["medicare-ffs", "commercial"])
def test_a_coded_type_that_says_otherwise_is_never_overruled_by_a_plan_name(hooks, sopt):
    record = named_plan(patient(70).with_lbp(), "Medicare Advantage PPO", sopt)
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_a_plan_name_that_is_not_medicare_advantage_does_not_exempt(hooks):
    record = named_plan(patient(70).with_lbp(), "Medicare Supplement Plan G", None)
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


THO = "http://terminology.hl7.org/CodeSystem/insurance-product-type"
ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"


def typed_coverage(record, system: str, code: str, **classes: str):
    """A coverage whose type is `system`#`code`, with Coverage.class values by class type (group, plan…)."""
    record.with_coverage("1")
    coverage = record.coverages[-1]
    coverage["type"] = {"coding": [{"system": system, "code": code}]}
    coverage["class"] = [
        {"type": {"coding": [{"system": COVERAGE_CLASS, "code": kind}]}, "value": value}
        for kind, value in classes.items()
    ]
    return record


def blue_button(record, part: str, *, system: str = ACTCODE, code: str = "SUBSIDIZ"):
    """Medicare coverage as the CMS Blue Button API sends it (CARIN Blue Button): type subsidized health
    program, group "Medicare", plan "Part A" to "Part D"."""
    return typed_coverage(record, system, code, group="Medicare", plan=part)


@pytest.mark.parametrize("code", ["mediadv", "mediadvhmo"])
def test_a_coverage_typed_medicare_advantage_in_hl7_insurance_product_type_is_exempt(hooks, code):
    record = typed_coverage(patient(70).with_lbp(), THO, code)
    [card] = hooks.select(record.order_select(ortho_referral()))
    assert card["source"]["topic"]["code"] == PN and "Medicare Advantage" in card["detail"]


@pytest.mark.parametrize("code", ["media", "medib", "mediab"])
def test_original_medicare_in_hl7_insurance_product_type_is_never_overruled_by_a_plan_name(hooks, code):
    record = typed_coverage(patient(70).with_lbp(), THO, code, plan="Medicare Advantage PPO")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


@pytest.mark.parametrize("code", ["dent", "vis", "medid"])
def test_a_medicare_advantage_member_with_an_hl7_typed_dental_vision_or_drug_plan_is_exempt(hooks, code):
    record = typed_coverage(patient(70).with_lbp().with_coverage("111"), THO, code)
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [PN]


def test_an_hl7_typed_medical_plan_beside_medicare_advantage_of_unknown_order_does_not_exempt(hooks):
    record = typed_coverage(patient(70).with_lbp().with_coverage("111"), THO, "commppo")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_medicare_part_c_as_the_blue_button_api_sends_it_is_exempt(hooks):
    record = blue_button(patient(70).with_lbp(), "Part C")
    [card] = hooks.select(record.order_select(ortho_referral()))
    assert card["source"]["topic"]["code"] == PN and "Medicare Advantage" in card["detail"]


@pytest.mark.parametrize("part", ["Part A", "Part B"])
def test_medicare_part_a_or_b_as_the_blue_button_api_sends_it_is_not_medicare_advantage(hooks, part):
    record = blue_button(patient(70).with_lbp(), part)
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_a_part_c_plan_whose_type_says_fee_for_service_is_not_medicare_advantage(hooks):
    record = blue_button(patient(70).with_lbp(), "Part C", system="https://nahdo.org/sopt", code="121")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


def test_a_part_c_plan_without_a_medicare_group_is_not_medicare_advantage(hooks):
    record = typed_coverage(patient(70).with_lbp(), ACTCODE, "SUBSIDIZ", group="Employer group 12", plan="Part C")
    assert topics(hooks.select(record.order_select(ortho_referral()))) == [MSC]


# --- physical therapy already under way -------------------------------------------------------------------


@pytest.mark.parametrize("code", [(CPT, "97110"), (CPT, "97140"), (CPT, "97530"), (SNOMED, "91251008")])
def test_a_pt_treatment_procedure_in_the_window_means_pt_is_under_way(hooks, code):
    assert hooks.view(patient(45).with_lbp().with_procedure(code, days=20).patient_view()) == []


@pytest.mark.parametrize("where", ["type_code", "service_type"])
def test_a_visit_typed_as_pt_treatment_means_pt_is_under_way(hooks, where):
    record = patient(45).with_lbp().with_encounter(days=20, **{where: (CPT, "97112")})
    assert hooks.view(record.patient_view()) == []


def test_pt_treatment_outside_the_window_or_a_modality_alone_leaves_the_pt_card(hooks):
    assert topics(hooks.view(patient(45).with_lbp().with_procedure((CPT, "97110"), days=200).patient_view())) == [PT]
    assert topics(hooks.view(patient(45).with_lbp().with_procedure((CPT, "97010"), days=20).patient_view())) == [PT]


# --- medications by their ingredient --------------------------------------------------------------------

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def ordered(rxcui: str, *, reason: str | None = LBP) -> dict:
    order = medication_request(reason=reason)
    order["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": rxcui}]}
    return order


@pytest.mark.parametrize("rxcui", ["7804", "5489", "10689"], ids=["oxycodone", "hydrocodone", "tramadol"])
def test_an_opioid_named_by_its_ingredient_gets_the_opioid_card(hooks, rxcui):
    assert topics(hooks.select(patient(45).with_lbp().order_select(ordered(rxcui)))) == [OPIOID]


def test_a_compounded_medication_whose_ingredient_is_an_opioid_gets_the_opioid_card(hooks):
    order = medication_request(reason=LBP)
    del order["medicationCodeableConcept"]
    order["contained"] = [
        {
            "resourceType": "Medication",
            "id": "compound",
            "code": {"text": "Compounded oral suspension"},
            "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "7804"}]}}],
        }
    ]
    order["medicationReference"] = {"reference": "#compound"}
    assert topics(hooks.select(patient(45).with_lbp().order_select(order))) == [OPIOID]


@pytest.mark.parametrize(
    "rxcui", ["7242", "6468", "7238"], ids=["naloxone", "loperamide", "nalbuphine-in-no-cdc-product"]
)
def test_an_ingredient_that_is_no_opioid_analgesic_gets_no_card(hooks, rxcui):
    assert hooks.select(patient(45).with_lbp().order_select(ordered(rxcui))) == []


# --- medications by their components (RxNorm SCDC, SBDC) -------------------------------------------------


@pytest.mark.parametrize(
    "rxcui", ["1014614", "1049639", "835604"], ids=["oxycodone-5-mg", "percocet-component", "ultram-component"]
)
def test_an_opioid_named_by_its_component_gets_the_opioid_card(hooks, rxcui):
    assert topics(hooks.select(patient(45).with_lbp().order_select(ordered(rxcui)))) == [OPIOID]


def test_a_component_of_buprenorphine_with_naloxone_is_opioid_use_disorder_treatment(hooks):
    assert hooks.select(patient(45).with_lbp().order_select(ordered("1010601"))) == []  # [Suboxone]


def test_a_buprenorphine_buccal_film_component_is_judged_by_its_reason(hooks):
    """Buprenorphine 0.075 MG: the component of the 75 mcg buccal film, a pain medicine (Belbuca)."""
    assert topics(hooks.select(patient(45).with_lbp().order_select(ordered("1716076")))) == [OPIOID]
    assert hooks.select(patient(45).with_lbp().order_select(ordered("1716076", reason="F11.20"))) == []


def test_a_component_of_a_product_the_cdc_list_leaves_out_gets_no_card(hooks):
    assert hooks.select(patient(45).with_lbp().order_select(ordered("564334"))) == []  # alfentanil [Alfenta]


def medication_of(product: str | None, ingredient: str, mid: str = "med-1") -> dict:
    """A Medication coded as `product` (RxNorm; text only when None) that lists `ingredient` (RxNorm IN)."""
    code = {"coding": [{"system": RXNORM, "code": product}]} if product else {"text": "Compounded preparation"}
    return {
        "resourceType": "Medication",
        "id": mid,
        "code": code,
        "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": ingredient}]}}],
    }


def ordering_contained(medication: dict) -> dict:
    order = medication_request(reason=LBP)
    del order["medicationCodeableConcept"]
    order["contained"] = [medication]
    order["medicationReference"] = {"reference": f"#{medication['id']}"}
    return order


@pytest.mark.parametrize(
    ("product", "ingredient"),
    [("995868", "2670"), ("1728783", "7052")],
    ids=["codeine-guaifenesin-cough-syrup", "morphine-injection"],
)
def test_a_product_the_cdc_list_leaves_out_is_no_opioid_analgesic_whatever_its_ingredients(hooks, product, ingredient):
    order = ordering_contained(medication_of(product, ingredient))
    assert hooks.select(patient(45).with_lbp().order_select(order)) == []
    assert hooks.select(patient(45).with_lbp().order_select(ordered(product))) == []


@pytest.mark.parametrize(
    ("product", "ingredient"), [("993781", "2670"), (None, "2670")], ids=["acetaminophen-codeine", "compounded"]
)
def test_codeine_as_an_analgesic_product_or_a_compounded_ingredient_gets_the_opioid_card(hooks, product, ingredient):
    order = ordering_contained(medication_of(product, ingredient))
    assert topics(hooks.select(patient(45).with_lbp().order_select(order))) == [OPIOID]


def test_buprenorphine_by_its_ingredient_is_judged_by_its_reason(hooks):
    assert topics(hooks.select(patient(45).with_lbp().order_select(ordered("1819")))) == [OPIOID]
    assert hooks.select(patient(45).with_lbp().order_select(ordered("1819", reason="F11.20"))) == []


# --- the same rules when the data is fetched from the EHR's FHIR server ----------------------------------


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_fetched_deceased_patient_gets_no_card(ehr, form):
    record = patient(60).with_lbp().with_patient(deceasedDateTime="2026-10-02")
    assert ehr.cards(form, record, lambda r: r.order_select(ortho_referral())) == []


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_fetched_dental_plan_beside_medicare_advantage_leaves_the_exemption(ehr, form):
    record = patient(70).with_lbp().with_coverage("111").with_coverage("313")
    assert topics(ehr.cards(form, record, lambda r: r.order_select(ortho_referral()))) == [PN]


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("part", "expected"), [("Part C", [PN]), ("Part B", [MSC])], ids=["part-c", "part-b"])
def test_fetched_blue_button_medicare_coverage_is_told_by_its_plan(ehr, form, part, expected):
    record = blue_button(patient(70).with_lbp(), part)
    assert topics(ehr.cards(form, record, lambda r: r.order_select(ortho_referral()))) == expected


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("code", "expected"), [("mediadv", [PN]), ("mediab", [MSC])], ids=["ma", "original"])
def test_fetched_hl7_typed_medicare_coverage(ehr, form, code, expected):
    record = typed_coverage(patient(70).with_lbp(), THO, code, plan="Medicare Advantage PPO")
    assert topics(ehr.cards(form, record, lambda r: r.order_select(ortho_referral()))) == expected


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_fetched_pt_treatment_silences_the_pt_card(ehr, form):
    record = patient(45).with_lbp().with_procedure((CPT, "97140"), days=20)
    assert ehr.cards(form, record, lambda r: r.patient_view(), hook="view") == []


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("rxcui", "expected"), [("1014614", [OPIOID]), ("1010601", [])], ids=["oxycodone", "suboxone"])
def test_a_fetched_medication_coded_by_its_component(ehr, form, rxcui, expected):
    record = patient(45).with_lbp()
    medication = {"resourceType": "Medication", "id": "comp-1", "code": {"coding": [{"system": RXNORM, "code": rxcui}]}}
    record.with_referenced(medication, prefetched_as="medicationRequests" if form == "prefetch" else None)
    order = medication_request(reason=LBP, medication="comp-1")
    if form == "prefetch":  # prefetch holds no Medication key: the EHR contains it in the order
        order = ordering_contained(medication)
        record.referenced = []
    assert topics(ehr.cards(form, record, lambda r: r.order_select(order))) == expected


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("product", "expected"), [("995868", []), (None, [OPIOID])], ids=["cough-syrup", "compound"])
def test_a_fetched_medication_is_judged_by_its_product_before_its_ingredients(ehr, form, product, expected):
    record = patient(45).with_lbp()
    medication = medication_of(product, "2670", mid="codeine-1")
    record.with_referenced(medication, prefetched_as="medicationRequests" if form == "prefetch" else None)
    order = medication_request(reason=LBP, medication="codeine-1")
    if form == "prefetch":  # prefetch holds no Medication key: the EHR contains it in the order
        order = ordering_contained(medication)
        record.referenced = []
    assert topics(ehr.cards(form, record, lambda r: r.order_select(order))) == expected


@pytest.mark.processes
@pytest.mark.parametrize("form", FORMS)
def test_a_referenced_compounded_medication_naming_an_opioid_ingredient_gets_the_opioid_card(ehr, form):
    record = patient(45).with_lbp()
    compound = {
        "resourceType": "Medication",
        "id": "compound-1",
        "code": {"text": "Compounded oral suspension"},
        "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "7804"}]}}],
    }
    record.with_referenced(compound, prefetched_as="medicationRequests" if form == "prefetch" else None)
    order = medication_request(reason=LBP, medication="compound-1")
    if form == "prefetch":  # prefetch holds no Medication key: the EHR contains it in the order
        order["contained"] = [compound]
        order["medicationReference"] = {"reference": "#compound-1"}
        record.referenced = []
    assert topics(ehr.cards(form, record, lambda r: r.order_select(order))) == [OPIOID]
