"""Classifying proposed Appointments (appointment-book): with a spine surgeon, initial, emergent, for LBP.

Judged from the Appointment itself (serviceType, specialty, appointmentType, reason, participants) and
from the patient's facts: whom its participants are (resolved the one way every rule resolves references,
facts.references: contained, else gathered or fetched by the pipeline), the ServiceRequest it is
`basedOn`, and whether a spine-surgeon visit would be the patient's initial one (facts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hooks import fhir
from hooks.facts import (
    PatientFacts,
    Reason,
    is_red_flag_reason,
    practitioner_specialties,
    reason_concepts,
    reason_of,
)
from hooks.fhir import References
from hooks.knowledge import Knowledge
from hooks.model import (
    Appointment,
    CodeableConcept,
    HumanName,
    Identifier,
    Organization,
    Practitioner,
    PractitionerRole,
    Reference,
    Resource,
    ServiceRequest,
    lenient,
)
from hooks.orders import is_emergent_order, is_spine_surgical_referral, names_a_specialty, text_names_spine_referral

# The states of an appointment still being booked (CDS Hooks: "Appointments in 'proposed' state").
BOOKING_STATUSES = frozenset({"proposed", "pending", "booked", "waitlist"})
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
PROVIDER_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "HealthcareService"})


def being_booked(appointments: Iterable[Appointment]) -> list[Appointment]:
    return [a for a in appointments if a.status in BOOKING_STATUSES]


def actors(appointment: Appointment) -> list[Reference]:
    """References to whom a proposed visit is with (Appointment.participant.actor)."""
    return fhir.with_reference(p.actor for p in appointment.participant)


def referrals(appointment: Appointment, references: References) -> list[ServiceRequest]:
    """The ServiceRequests the appointment is based on that can be found (contained or gathered)."""
    found = (references.resolve(ref, appointment) for ref in fhir.with_reference(appointment.basedOn))
    return [r for r in found if isinstance(r, ServiceRequest)]


def providers(refs: Iterable[Reference], container: Resource, references: References) -> Iterator[Resource]:
    """The resources these references name that are at hand, each PractitionerRole followed by its
    Practitioner and Organization (contained in the referring resource or in the role)."""
    for ref in refs:
        resource = references.resolve(ref, container)
        if resource is None:
            continue
        yield resource
        if isinstance(resource, PractitionerRole):
            for link in (resource.practitioner, resource.organization):
                linked = references.peek(link, container) or references.peek(link, resource)
                if linked is not None:
                    yield linked


def participant_resources(appointment: Appointment, references: References) -> Iterator[Resource]:
    """The participants' resources at hand, and the Practitioner and Organization of a PractitionerRole."""
    return providers(actors(appointment), appointment, references)


def specialty_concepts(appointment: Appointment, references: References) -> list[CodeableConcept]:
    """What says who the visit is with: serviceType, specialty, and each participant's specialty."""
    concepts: list[CodeableConcept] = [*appointment.serviceType, *appointment.specialty]
    for actor in actors(appointment):
        concepts += practitioner_specialties(actor, appointment, references)
    return concepts


def is_with_spine_surgeon(appointment: Appointment, references: References, knowledge: Knowledge) -> bool:
    """With an orthopedic spine surgeon or neurosurgeon: by specialty code or words, or by its referral."""
    vs = knowledge.valuesets
    concepts = specialty_concepts(appointment, references)
    if vs.matches("ortho-nonspine-specialty", concepts):
        return False
    if vs.matches("spine-surgeon-specialty", concepts):
        return True
    if any(is_spine_surgical_referral(r, knowledge, references) for r in referrals(appointment, references)):
        return True
    if names_a_specialty(list(concepts), knowledge):
        return False
    return bool(concepts) and text_names_spine_referral(fhir.concept_text(concepts), knowledge)


def names_its_specialty(appointment: Appointment) -> bool:
    """The appointment says what kind of visit it is, so whom it is with does not decide."""
    return bool(appointment.serviceType or appointment.specialty)


def might_be_with_spine_surgeon(appointment: Appointment, knowledge: Knowledge) -> bool:
    """From the Appointment alone: a spine-surgeon signal, or references (a referral, a practitioner)
    that the patient's data may resolve into one. A follow-up never needs patient data."""
    if is_follow_up(appointment, knowledge):
        return False
    if is_with_spine_surgeon(appointment, References(), knowledge):
        return True
    own = specialty_concepts(appointment, References())
    if own and names_a_specialty(list(own), knowledge):
        return False  # coded as another specialty: whoever the participants are, not a spine surgeon
    unresolved = [
        ref
        for ref in [*fhir.with_reference(appointment.basedOn), *actors(appointment)]
        if fhir.contained(appointment, ref.reference or "") is None
        and fhir.reference_type(ref) in {"ServiceRequest", "Practitioner", "PractitionerRole"}
    ]
    return bool(unresolved)


def is_follow_up(appointment: Appointment, knowledge: Knowledge) -> bool:
    """A follow-up visit by its coded appointmentType or serviceType, or by its appointmentType's words."""
    kind = appointment.appointmentType
    if knowledge.valuesets.matches("visit-follow-up", [kind, *appointment.serviceType]):
        return True
    if fhir.is_coded(kind):
        return False
    text = fhir.concept_text((kind,))
    return any(p.search(text) for p in knowledge.policy.follow_up_text_patterns)


def is_emergent_visit(appointment: Appointment, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """Booked as an emergency, for a red-flag reason, or based on a stat/asap or red-flag referral."""
    if knowledge.valuesets.matches("visit-emergency", appointment.appointmentType):
        return True
    if any(is_red_flag_reason(c, knowledge) for c in reason_concepts(appointment, facts.references)):
        return True
    return any(is_emergent_order(r, facts, knowledge) for r in referrals(appointment, facts.references))


def is_visit_for_lbp(appointment: Appointment, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """For LBP by its own reason; without one, by its referral's reason; else when the patient has active LBP."""
    vs = knowledge.valuesets
    own = reason_of(appointment, facts, vs)
    if own is not Reason.NONE:
        return own is Reason.LBP
    given = {reason_of(r, facts, vs) for r in referrals(appointment, facts.references)} - {Reason.NONE}
    return Reason.LBP in given if given else facts.has_active_lbp


def is_initial_spine_visit_for_lbp(appointment: Appointment, facts: PatientFacts, knowledge: Knowledge) -> bool:
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


def identifiers_of(resource: Resource) -> tuple[Identifier, ...]:
    if isinstance(resource, (Practitioner, PractitionerRole, Organization)):
        return resource.identifier
    return ()


def npis(resources: Iterable[Resource], references: Iterable[Reference | None]) -> frozenset[str]:
    """NPIs of these resources and of references that carry an identifier."""
    identifiers = [i for r in resources for i in identifiers_of(r)]
    identifiers += [r.identifier for r in references if r is not None and r.identifier is not None]
    return frozenset(i.value.strip() for i in identifiers if i.system == NPI_SYSTEM and i.value is not None)


def visit_npis(appointment: Appointment, references: References) -> frozenset[str]:
    """The NPIs of the practice and clinicians the visit is with (as far as the data says)."""
    return npis(participant_resources(appointment, references), (p.actor for p in appointment.participant))


def visit_with(appointment: Appointment, references: References) -> str:
    """Who the visit is with, in the EHR's words: the displays (or names) of its practitioner and
    organization participants."""
    names: list[str] = []
    for participant in appointment.participant:
        actor = participant.actor
        if actor is None:
            continue
        resource = references.resolve(actor, appointment)
        kind = resource.resource_type if resource else fhir.reference_type(actor)
        if kind not in PROVIDER_TYPES:
            continue
        display = actor.display or person_name(resource, appointment, references)
        if display is not None and display.strip() and display.strip() not in names:
            names.append(display.strip())
    return ", ".join(names)


def person_name(resource: Resource | None, appointment: Appointment, references: References) -> str | None:
    """A Practitioner's or Organization's name; a PractitionerRole's practitioner's."""
    if isinstance(resource, PractitionerRole):
        linked = references.resolve(resource.practitioner, appointment) or references.resolve(
            resource.practitioner, resource
        )
        return person_name(linked, appointment, references) if linked is not resource else None
    if isinstance(resource, Organization):
        return lenient(resource.name, str, None)
    if not isinstance(resource, Practitioner):
        return None
    for sent in lenient(resource.name, list[object], []):
        name = lenient(sent, HumanName, None)
        text = (name.text or " ".join([*name.prefix, *name.given, name.family or ""])) if name else ""
        if text.strip():
            return text.strip()
    return None
