"""Classifying proposed Appointments (appointment-book): with a spine surgeon, initial, emergent, for LBP.

Judged from the Appointment itself (serviceType, specialty, appointmentType, reason, participants) and
from the patient's facts: whom its participants are (resolved the one way every rule resolves references,
facts.references: contained, else gathered or fetched by the pipeline), the ServiceRequest it is
`basedOn`, and whether a spine-surgeon visit would be the patient's initial one (facts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from hooks import fhir
from hooks.facts import (
    PatientFacts,
    Reason,
    appointment_participants,
    is_red_flag_reason,
    practitioner_specialties,
    reason_concepts,
    reason_of,
)
from hooks.fhir import References, Resource
from hooks.knowledge import Knowledge
from hooks.orders import is_emergent_order, is_spine_surgical_referral, names_a_specialty, text_names_spine_referral

# The states of an appointment still being booked (CDS Hooks: "Appointments in 'proposed' state").
BOOKING_STATUSES = frozenset({"proposed", "pending", "booked", "waitlist"})
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
PROVIDER_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "HealthcareService"})


def being_booked(appointments: Iterable[Resource]) -> list[Resource]:
    return [a for a in appointments if a.get("status") in BOOKING_STATUSES]


def referrals(appointment: Resource, references: References) -> list[Resource]:
    """The ServiceRequests the appointment is based on that can be found (contained or gathered)."""
    found = (references.resolve(ref, appointment) for ref in fhir.references_in(appointment.get("basedOn")))
    return [r for r in found if r is not None and r.get("resourceType") == "ServiceRequest"]


def participant_resources(appointment: Resource, references: References) -> Iterator[Resource]:
    """The participants' resources at hand, and the Practitioner and Organization of a PractitionerRole."""
    return providers(appointment_participants(appointment), appointment, references)


def providers(refs: Iterable[Any], container: Resource, references: References) -> Iterator[Resource]:
    """The resources these references name that are at hand, each PractitionerRole followed by its
    Practitioner and Organization (contained in the referring resource or in the role)."""
    for ref in refs:
        resource = references.resolve(ref, container)
        if resource is None:
            continue
        yield resource
        if resource.get("resourceType") == "PractitionerRole":
            for link in (resource.get("practitioner"), resource.get("organization")):
                linked = references.resolve(link, container) or references.resolve(link, resource)
                if linked is not None:
                    yield linked


def specialty_concepts(appointment: Resource, references: References) -> list[Any]:
    """What says who the visit is with: serviceType, specialty, and each participant's specialty."""
    concepts: list[Any] = [*(appointment.get("serviceType") or []), *(appointment.get("specialty") or [])]
    for actor in appointment_participants(appointment):
        concepts += practitioner_specialties(actor, appointment, references)
    return [c for c in concepts if c]


def is_with_spine_surgeon(appointment: Resource, references: References, knowledge: Knowledge) -> bool:
    """With an orthopedic spine surgeon or neurosurgeon: by specialty code or words, or by its referral."""
    vs = knowledge.valuesets
    concepts = specialty_concepts(appointment, references)
    if vs.matches("ortho-nonspine-specialty", concepts):
        return False
    if vs.matches("spine-surgeon-specialty", concepts):
        return True
    if any(is_spine_surgical_referral(r, knowledge, references) for r in referrals(appointment, references)):
        return True
    if names_a_specialty(concepts, knowledge):
        return False
    return bool(concepts) and text_names_spine_referral(fhir.concept_text(concepts), knowledge)


def might_be_with_spine_surgeon(appointment: Resource, knowledge: Knowledge) -> bool:
    """From the Appointment alone: a spine-surgeon signal, or references (a referral, a practitioner)
    that the patient's data may resolve into one. A follow-up never needs patient data."""
    if is_follow_up(appointment, knowledge):
        return False
    if is_with_spine_surgeon(appointment, References(), knowledge):
        return True
    own = specialty_concepts(appointment, References())
    if own and names_a_specialty(own, knowledge):
        return False  # coded as another specialty: whoever the participants are, not a spine surgeon
    unresolved = [
        ref
        for ref in [*fhir.references_in(appointment.get("basedOn")), *appointment_participants(appointment)]
        if fhir.contained(appointment, ref["reference"]) is None
        and (fhir.reference_key(ref) or "").split("/")[0] in {"ServiceRequest", "Practitioner", "PractitionerRole"}
    ]
    return bool(unresolved)


def is_follow_up(appointment: Resource, knowledge: Knowledge) -> bool:
    """A follow-up visit by its coded appointmentType or serviceType, or by its appointmentType's words."""
    kind = appointment.get("appointmentType")
    if knowledge.valuesets.matches("visit-follow-up", [kind, *(appointment.get("serviceType") or [])]):
        return True
    if fhir.is_coded(kind):
        return False
    text = fhir.concept_text(kind)
    return any(p.search(text) for p in knowledge.policy.follow_up_text_patterns)


def is_emergent_visit(appointment: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """Booked as an emergency, for a red-flag reason, or based on a stat/asap or red-flag referral."""
    if knowledge.valuesets.matches("visit-emergency", appointment.get("appointmentType")):
        return True
    if any(is_red_flag_reason(c, knowledge) for c in reason_concepts(appointment, facts)):
        return True
    return any(is_emergent_order(r, facts, knowledge) for r in referrals(appointment, facts.references))


def is_visit_for_lbp(appointment: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """For LBP by its own reason; without one, by its referral's reason; else when the patient has active LBP."""
    vs = knowledge.valuesets
    own = reason_of(appointment, facts, vs)
    if own is not Reason.NONE:
        return own is Reason.LBP
    given = {reason_of(r, facts, vs) for r in referrals(appointment, facts.references)} - {Reason.NONE}
    return Reason.LBP in given if given else facts.has_active_lbp


def is_initial_spine_visit_for_lbp(appointment: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """The visit Prior Notification is about: an initial office visit with a spine surgeon for LBP, not emergent.

    Initial: not a follow-up by its appointment type, and the patient not already under a spine surgeon's
    care nor after lumbar spine surgery (facts.is_initial_spine_visit).
    """
    return (
        facts.is_initial_spine_visit
        and not is_follow_up(appointment, knowledge)
        and is_with_spine_surgeon(appointment, facts.references, knowledge)
        and not is_emergent_visit(appointment, facts, knowledge)
        and is_visit_for_lbp(appointment, facts, knowledge)
    )


def npis(resources: Iterable[Resource], references: Iterable[Any]) -> frozenset[str]:
    """NPIs of these resources and of references that carry an identifier."""
    identifiers = [i for r in resources for i in r.get("identifier") or []]
    identifiers += [r.get("identifier") for r in references if isinstance(r, dict)]
    return frozenset(
        i["value"].strip()
        for i in identifiers
        if isinstance(i, dict) and i.get("system") == NPI_SYSTEM and isinstance(i.get("value"), str)
    )


def visit_npis(appointment: Resource, references: References) -> frozenset[str]:
    """The NPIs of the practice and clinicians the visit is with (as far as the data says)."""
    actors = [p.get("actor") for p in appointment.get("participant") or [] if isinstance(p, dict)]
    return npis(participant_resources(appointment, references), actors)


def visit_with(appointment: Resource, references: References) -> str:
    """Who the visit is with, in the EHR's words: the displays (or names) of its practitioner and
    organization participants."""
    names: list[str] = []
    for participant in appointment.get("participant") or []:
        actor = participant.get("actor") if isinstance(participant, dict) else None
        if not isinstance(actor, dict):
            continue
        resource = references.resolve(actor, appointment)
        kind = str(resource.get("resourceType")) if resource else (fhir.reference_key(actor) or "").split("/")[0]
        if kind not in PROVIDER_TYPES:
            continue
        display = actor.get("display") or person_name(resource, appointment, references)
        if isinstance(display, str) and display.strip() and display.strip() not in names:
            names.append(display.strip())
    return ", ".join(names)


def person_name(resource: Resource | None, appointment: Resource, references: References) -> str | None:
    """A Practitioner's or Organization's name; a PractitionerRole's practitioner's."""
    if resource is None:
        return None
    if resource.get("resourceType") == "PractitionerRole":
        linked = references.resolve(resource.get("practitioner"), appointment) or references.resolve(
            resource.get("practitioner"), resource
        )
        return person_name(linked, appointment, references) if linked is not resource else None
    if isinstance(resource.get("name"), str):
        return str(resource["name"])  # Organization.name
    for name in resource.get("name") or []:
        if isinstance(name, dict):
            parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
            text = name.get("text") or " ".join(parts)
            if isinstance(text, str) and text.strip():
                return text.strip()
    return None
