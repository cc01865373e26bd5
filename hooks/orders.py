"""Classifying orders: spine-surgical referral, emergent order, opioid analgesic."""

from __future__ import annotations

from collections.abc import Iterable

from hooks import fhir
from hooks.facts import PatientFacts, is_red_flag_reason, practitioner_specialties, reason_concepts
from hooks.fhir import References
from hooks.knowledge import Knowledge
from hooks.model import CodeableConcept, MedicationRequest, Reference, Resource, ServiceRequest

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


# Statuses of a draft order that is not being placed: withdrawn, recorded in error, or already done (FHIR R4
# request-status for ServiceRequest; medicationrequest-status adds cancelled and stopped). The order hooks may be
# called again when an order is cancelled or re-signed: such an order is never judged as a new referral or
# prescription, so it gets no card and no coverage information.
NOT_BEING_PLACED = frozenset({"revoked", "entered-in-error", "completed", "cancelled", "stopped"})


def being_placed(orders: Iterable[Resource]) -> list[Resource]:
    """The draft orders being placed (any other status, or none)."""
    return [
        o for o in orders if not (isinstance(o, (ServiceRequest, MedicationRequest)) and o.status in NOT_BEING_PLACED)
    ]


def performer_specialties(order: ServiceRequest, references: References) -> list[CodeableConcept]:
    """What an order says about who is to perform it: performerType, and each performer's specialty
    (PractitionerRole.specialty, or the roles and qualifications of a Practitioner)."""
    concepts: list[CodeableConcept] = [order.performerType] if order.performerType is not None else []
    for performer in fhir.with_reference(order.performer):
        concepts += practitioner_specialties(performer, order, references)
    return concepts


def is_physical_therapy_referral(order: ServiceRequest, knowledge: Knowledge, references: References) -> bool:
    """A referral to physical therapy, by code, performer specialty or words."""
    return is_physical_therapy(order, performer_specialties(order, references), knowledge)


def is_physical_therapy(order: ServiceRequest, performers: list[CodeableConcept], knowledge: Knowledge) -> bool:
    """is_physical_therapy_referral, the performers' specialties already read."""
    vs = knowledge.valuesets
    if vs.matches("pt-referral", order.code) or vs.matches("pt-specialty", performers):
        return True
    text = f"{fhir.concept_text((order.code,))} {fhir.concept_text(performers)}"
    return any(p.search(text) for p in knowledge.policy.physical_therapy_text)


def names_a_specialty(concepts: list[CodeableConcept | None], knowledge: Knowledge) -> bool:
    """A code that says what kind of care is wanted: any NUCC taxonomy code, or a code of our referral and
    specialty sets. A generic code (SNOMED CT 3457005 'Patient referral') says nothing."""
    vs = knowledge.valuesets
    if any(system == NUCC for system, _code in fhir.codings(concepts)):
        return True
    return any(not vs.sets_of(concept).isdisjoint(SPECIALTY_SETS) for concept in concepts)


def is_spine_surgical_referral(order: Resource, knowledge: Knowledge, references: References) -> bool:
    """A referral to orthopedic (spine) surgery or neurosurgery, by code, performer or words.

    A physical therapy referral never is, nor a non-spine orthopedic subspecialty. A code or
    performer specialty from our sets decides; when none does (a generic referral code, an EHR's
    own codes), the words of the code, the performer type and the performers' specialties are read.
    """
    if not isinstance(order, ServiceRequest):
        return False
    performers = performer_specialties(order, references)
    if is_physical_therapy(order, performers, knowledge):
        return False
    vs = knowledge.valuesets
    if vs.matches("ortho-nonspine-specialty", performers):
        return False
    if vs.matches("spine-surgery-referral", order.code) or vs.matches("spine-surgeon-specialty", performers):
        return True
    if names_a_specialty([order.code, *performers], knowledge):
        return False
    return text_names_spine_referral(f"{fhir.concept_text((order.code,))} {fhir.concept_text(performers)}", knowledge)


def classified_by_its_code(order: ServiceRequest, knowledge: Knowledge) -> bool:
    """Whether the order's own code says what kind of referral it is (spine surgery, PT, another specialty),
    so that its performers cannot turn it into a spine-surgical referral or out of one."""
    return names_a_specialty([order.code], knowledge)


def text_names_spine_referral(text: str, knowledge: Knowledge) -> bool:
    policy = knowledge.policy
    if not any(p.search(text) for p in policy.referral_text_patterns):
        return False
    return not any(p.search(text) for p in policy.referral_text_exclusions)


def is_emergent_order(order: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """Ordered stat/asap, or for an emergent or urgent red-flag condition (not one coded as follow-up)."""
    return has_emergent_priority(order, knowledge) or has_red_flag_reason(order, facts, knowledge)


def has_emergent_priority(order: Resource, knowledge: Knowledge) -> bool:
    priority = order.priority if isinstance(order, (ServiceRequest, MedicationRequest)) else None
    return priority in knowledge.policy.emergent_priorities


def has_red_flag_reason(order: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    return any(is_red_flag_reason(c, knowledge) for c in reason_concepts(order, facts.references))


def might_concern_program(orders: Iterable[Resource], knowledge: Knowledge) -> bool:
    """Whether any order could be a spine-surgical referral or an opioid analgesic, judged from the orders
    alone (contained resources resolved). An order that names a performer or a Medication by reference
    could be either until that reference is resolved, so it counts: the patient's data is then gathered.
    """
    none = References()
    vs = knowledge.valuesets
    for order in being_placed(orders):
        if isinstance(order, ServiceRequest):
            if is_spine_surgical_referral(order, knowledge, none):
                return True
            if not is_physical_therapy_referral(order, knowledge, none) and has_unresolved(order, order.performer):
                return True
        elif isinstance(order, MedicationRequest):
            if vs.has_any("opioid-analgesics", fhir.codings(fhir.medication_concepts(order, none))):
                return True
            if has_unresolved(order, (order.medicationReference,)):
                return True
    return False


def has_unresolved(order: Resource, references: Iterable[Reference | None]) -> bool:
    """These references name a resource not contained in the order."""
    return any(fhir.contained(order, ref.reference or "") is None for ref in fhir.with_reference(references))
