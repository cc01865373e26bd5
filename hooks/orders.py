"""Classifying orders: spine-surgical referral, emergent order, opioid analgesic."""

from __future__ import annotations

from hooks import fhir
from hooks.facts import PatientFacts, is_red_flag_concept, reason_concepts
from hooks.fhir import Resource
from hooks.knowledge import Knowledge

# Code systems whose codes our referral value sets cover; a referral coded only in an
# EHR's local system is classified by its text instead.
REFERRAL_SYSTEMS = frozenset({"http://snomed.info/sct", "http://nucc.org/provider-taxonomy"})


def is_spine_surgical_referral(order: Resource, knowledge: Knowledge) -> bool:
    """A referral to orthopaedic (spine) surgery or neurosurgery, by code, performer or text."""
    if order.get("resourceType") != "ServiceRequest":
        return False
    vs = knowledge.valuesets
    code, performer = order.get("code"), order.get("performerType")
    if vs.matches("ortho-nonspine-specialty", performer):
        return False
    if vs.matches("spine-surgery-referral", code) or vs.matches("spine-surgeon-specialty", performer):
        return True
    if has_standard_coding(code) or has_standard_coding(performer):
        return False
    return text_names_spine_referral(f"{fhir.concept_text(code)} {fhir.concept_text(performer)}", knowledge)


def has_standard_coding(concept: object) -> bool:
    return any(system in REFERRAL_SYSTEMS for system, _code in fhir.codings(concept))


def text_names_spine_referral(text: str, knowledge: Knowledge) -> bool:
    policy = knowledge.policy
    if not any(p.search(text) for p in policy.referral_text_patterns):
        return False
    return not any(p.search(text) for p in policy.referral_text_exclusions)


def is_emergent_order(order: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """Ordered stat/asap, or for a red-flag condition."""
    if order.get("priority") in knowledge.policy.emergent_priorities:
        return True
    return any(is_red_flag_concept(c, knowledge.valuesets) for c in reason_concepts(order, facts))


def is_opioid_analgesic(order: Resource, knowledge: Knowledge) -> bool:
    """An opioid analgesic (CDC value set), but not a medication for opioid use disorder."""
    if order.get("resourceType") != "MedicationRequest":
        return False
    found = fhir.all_codings(fhir.medication_concepts(order))
    vs = knowledge.valuesets
    return vs.has_any("opioid-analgesics", found) and not vs.has_any("moud", found)
