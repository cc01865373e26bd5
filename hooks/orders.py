"""Classifying orders: spine-surgical referral, emergent order, opioid analgesic."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hooks import fhir
from hooks.facts import (
    PatientFacts,
    is_red_flag_reason,
    practitioner_specialties,
    reason_concepts,
)
from hooks.fhir import References, Resource
from hooks.knowledge import Knowledge

NUCC = "http://nucc.org/provider-taxonomy"
# Value sets whose codes name what a referral is for (a specialty or a kind of care): an order coded
# with one of them is classified by its codes, never by its words.
SPECIALTY_SETS = (
    "spine-surgery-referral",
    "spine-surgeon-specialty",
    "ortho-nonspine-specialty",
    "msc-referral",
    "msc-specialty",
    "pt-referral",
    "pt-specialty",
)


def performer_specialties(order: Resource, references: References) -> list[Any]:
    """What an order says about who is to perform it: performerType, and each performer's specialty
    (PractitionerRole.specialty, or the roles and qualifications of a Practitioner)."""
    concepts: list[Any] = [order.get("performerType")]
    for performer in fhir.references_in(order.get("performer")):
        concepts += practitioner_specialties(performer, order, references)
    return [c for c in concepts if c]


def is_physical_therapy_referral(order: Resource, knowledge: Knowledge, references: References) -> bool:
    """A referral to physical therapy, by code, performer specialty or words."""
    vs = knowledge.valuesets
    performers = performer_specialties(order, references)
    if vs.matches("pt-referral", order.get("code")) or vs.matches("pt-specialty", performers):
        return True
    text = f"{fhir.concept_text(order.get('code'))} {fhir.concept_text(performers)}"
    return any(p.search(text) for p in knowledge.policy.physical_therapy_text)


def names_a_specialty(concepts: list[Any], knowledge: Knowledge) -> bool:
    """A code that says what kind of care is wanted: any NUCC taxonomy code, or a code of our referral and
    specialty sets. A generic code (SNOMED CT 3457005 'Patient referral') says nothing."""
    vs = knowledge.valuesets
    if any(system == NUCC for system, _code in fhir.all_codings(concepts)):
        return True
    return any(not vs.sets_of(concept).isdisjoint(SPECIALTY_SETS) for concept in concepts)


def is_spine_surgical_referral(order: Resource, knowledge: Knowledge, references: References) -> bool:
    """A referral to orthopedic (spine) surgery or neurosurgery, by code, performer or words.

    A physical therapy referral never is, nor a non-spine orthopedic subspecialty. A code or
    performer specialty from our sets decides; when none does (a generic referral code, an EHR's
    own codes), the words of the code, the performer type and the performers' specialties are read.
    """
    if order.get("resourceType") != "ServiceRequest":
        return False
    if is_physical_therapy_referral(order, knowledge, references):
        return False
    vs = knowledge.valuesets
    code, performers = order.get("code"), performer_specialties(order, references)
    if vs.matches("ortho-nonspine-specialty", performers):
        return False
    if vs.matches("spine-surgery-referral", code) or vs.matches("spine-surgeon-specialty", performers):
        return True
    if names_a_specialty([code, *performers], knowledge):
        return False
    return text_names_spine_referral(f"{fhir.concept_text(code)} {fhir.concept_text(performers)}", knowledge)


def text_names_spine_referral(text: str, knowledge: Knowledge) -> bool:
    policy = knowledge.policy
    if not any(p.search(text) for p in policy.referral_text_patterns):
        return False
    return not any(p.search(text) for p in policy.referral_text_exclusions)


def is_emergent_order(order: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """Ordered stat/asap, or for an emergent or urgent red-flag condition (not one coded as follow-up)."""
    return has_emergent_priority(order, knowledge) or has_red_flag_reason(order, facts, knowledge)


def has_emergent_priority(order: Resource, knowledge: Knowledge) -> bool:
    return order.get("priority") in knowledge.policy.emergent_priorities


def has_red_flag_reason(order: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    return any(is_red_flag_reason(c, knowledge) for c in reason_concepts(order, facts))


def might_concern_program(orders: Iterable[Resource], knowledge: Knowledge) -> bool:
    """Whether any order could be a spine-surgical referral or an opioid analgesic, judged from the orders
    alone (contained resources resolved). An order that names a performer or a Medication by reference
    could be either until that reference is resolved, so it counts: the patient's data is then gathered.
    """
    none = References()
    vs = knowledge.valuesets
    for order in orders:
        kind = order.get("resourceType")
        if kind == "ServiceRequest":
            if is_spine_surgical_referral(order, knowledge, none):
                return True
            if not is_physical_therapy_referral(order, knowledge, none) and has_unresolved(order, "performer"):
                return True
        elif kind == "MedicationRequest":
            if vs.has_any("opioid-analgesics", fhir.all_codings(fhir.medication_concepts(order, none))):
                return True
            if has_unresolved(order, "medicationReference"):
                return True
    return False


def has_unresolved(order: Resource, field: str) -> bool:
    """The field holds a reference to a resource not contained in the order."""
    return any(fhir.contained(order, ref["reference"]) is None for ref in fhir.references_in(order.get(field)))
