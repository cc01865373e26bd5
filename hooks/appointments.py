"""Classifying proposed Appointments (appointment-book): with a spine surgeon, initial, emergent, for LBP.

Judged from the Appointment itself (serviceType, specialty, appointmentType, reason, participants and
the resources it contains) and from what the patient's record says about the ServiceRequest it is
`basedOn`. Participant references that are neither contained nor among the patient's resources are
not looked up here (reference resolution belongs to facts.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from hooks import fhir
from hooks.facts import PatientFacts, Reason, is_for_lbp, is_red_flag_concept, reason_concepts, reason_of
from hooks.fhir import Resource
from hooks.knowledge import Knowledge
from hooks.orders import has_standard_coding, is_emergent_order, is_spine_surgical_referral, text_names_spine_referral

# The states of an appointment still being booked (CDS Hooks: "Appointments in 'proposed' state").
BOOKING_STATUSES = frozenset({"proposed", "pending", "booked", "waitlist"})
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
SURGEON_ROLE_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "HealthcareService"})

# Looks a Reference up among the resources at hand: None when it is not there.
Resolve = Callable[[Any], Resource | None]


def being_booked(appointments: Iterable[Resource]) -> list[Resource]:
    return [a for a in appointments if a.get("status") in BOOKING_STATUSES]


def resolver(appointment: Resource, facts: PatientFacts | None = None) -> Resolve:
    """Contained resources ('#id'), then the patient's ServiceRequests from prefetch (basedOn)."""
    contained = {
        f"#{c['id']}": c
        for c in appointment.get("contained") or []
        if isinstance(c, dict) and isinstance(c.get("id"), str)
    }
    requests = facts.service_requests_by_key if facts is not None else {}

    def resolve(reference: Any) -> Resource | None:
        if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
            return None
        if reference["reference"] in contained:
            return contained[reference["reference"]]
        return requests.get(fhir.reference_key(reference) or "")

    return resolve


def referrals(appointment: Resource, resolve: Resolve) -> list[Resource]:
    """The ServiceRequests the appointment is based on that can be found."""
    found = (resolve(ref) for ref in appointment.get("basedOn") or [])
    return [r for r in found if r is not None and r.get("resourceType") == "ServiceRequest"]


def participant_resources(appointment: Resource, resolve: Resolve) -> Iterator[Resource]:
    """The participants' resources at hand, and the practitioner and organization of a PractitionerRole."""
    for participant in appointment.get("participant") or []:
        if not isinstance(participant, dict):
            continue
        actor = resolve(participant.get("actor"))
        if actor is None:
            continue
        yield actor
        if actor.get("resourceType") == "PractitionerRole":
            for linked in (resolve(actor.get("practitioner")), resolve(actor.get("organization"))):
                if linked is not None:
                    yield linked


def specialty_concepts(appointment: Resource, resolve: Resolve) -> list[Any]:
    """What says who the visit is with: serviceType, specialty, and the participant roles' specialty and code."""
    concepts: list[Any] = [*(appointment.get("serviceType") or []), *(appointment.get("specialty") or [])]
    for resource in participant_resources(appointment, resolve):
        if resource.get("resourceType") == "PractitionerRole":
            concepts += [*(resource.get("specialty") or []), *(resource.get("code") or [])]
    return concepts


def is_with_spine_surgeon(appointment: Resource, resolve: Resolve, knowledge: Knowledge) -> bool:
    """With an orthopaedic spine surgeon or neurosurgeon: by specialty code or text, or by its referral."""
    vs = knowledge.valuesets
    concepts = specialty_concepts(appointment, resolve)
    if vs.matches("ortho-nonspine-specialty", concepts):
        return False
    if vs.matches("spine-surgeon-specialty", concepts):
        return True
    if any(is_spine_surgical_referral(r, knowledge) for r in referrals(appointment, resolve)):
        return True
    if has_standard_coding(concepts):
        return False
    return bool(concepts) and text_names_spine_referral(fhir.concept_text(concepts), knowledge)


def might_be_with_spine_surgeon(appointment: Resource, knowledge: Knowledge) -> bool:
    """From the Appointment alone: a spine-surgeon signal, or a referral that patient data may resolve."""
    return is_with_spine_surgeon(appointment, resolver(appointment), knowledge) or bool(appointment.get("basedOn"))


def is_follow_up(appointment: Resource, knowledge: Knowledge) -> bool:
    """A follow-up visit by its coded appointmentType or serviceType, or by its appointmentType's text."""
    kind = appointment.get("appointmentType")
    if knowledge.valuesets.matches("visit-follow-up", [kind, *(appointment.get("serviceType") or [])]):
        return True
    if fhir.is_coded(kind):
        return False
    text = fhir.concept_text(kind)
    return any(p.search(text) for p in knowledge.policy.follow_up_text_patterns)


def is_emergent_visit(appointment: Resource, resolve: Resolve, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """Booked as an emergency, for a red-flag reason, or based on a stat/asap or red-flag referral."""
    if knowledge.valuesets.matches("visit-emergency", appointment.get("appointmentType")):
        return True
    if any(is_red_flag_concept(c, knowledge.valuesets) for c in reason_concepts(appointment, facts)):
        return True
    return any(is_emergent_order(r, facts, knowledge) for r in referrals(appointment, resolve))


def is_visit_for_lbp(appointment: Resource, resolve: Resolve, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """For LBP by its own reason; without one, by its referral's reason; else when the patient has active LBP."""
    vs = knowledge.valuesets
    if reason_of(appointment, facts, vs) is not Reason.NONE:
        return is_for_lbp(appointment, facts, vs)
    based_on = referrals(appointment, resolve)
    if any(reason_of(r, facts, vs) is not Reason.NONE for r in based_on):
        return any(reason_of(r, facts, vs) is Reason.LBP for r in based_on)
    return facts.has_active_lbp


def is_initial_spine_visit_for_lbp(
    appointment: Resource, resolve: Resolve, facts: PatientFacts, knowledge: Knowledge
) -> bool:
    """The visit Prior Notification is about: an initial office visit with a spine surgeon for LBP, not emergent."""
    return (
        is_with_spine_surgeon(appointment, resolve, knowledge)
        and not is_follow_up(appointment, knowledge)
        and not is_emergent_visit(appointment, resolve, facts, knowledge)
        and is_visit_for_lbp(appointment, resolve, facts, knowledge)
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


def visit_npis(appointment: Resource, resolve: Resolve) -> frozenset[str]:
    """The NPIs of the practice and clinicians the visit is with (as far as the Appointment says)."""
    actors = [p.get("actor") for p in appointment.get("participant") or [] if isinstance(p, dict)]
    return npis(participant_resources(appointment, resolve), actors)


def visit_with(appointment: Resource, resolve: Resolve) -> str:
    """Who the visit is with, in the EHR's words: the displays of its practitioner and organization participants."""
    names: list[str] = []
    for participant in appointment.get("participant") or []:
        actor = participant.get("actor") if isinstance(participant, dict) else None
        kind = (fhir.reference_key(actor) or "").split("/")[0]
        resource = resolve(actor)
        if resource is not None:
            kind = str(resource.get("resourceType"))
        if kind not in SURGEON_ROLE_TYPES or not isinstance(actor, dict):
            continue
        display = actor.get("display") or person_name(resource)
        if isinstance(display, str) and display.strip() and display.strip() not in names:
            names.append(display.strip())
    return ", ".join(names)


def person_name(resource: Resource | None) -> str | None:
    if resource is None:
        return None
    if isinstance(resource.get("name"), str):
        return str(resource["name"])  # Organization.name
    for name in resource.get("name") or []:
        if isinstance(name, dict):
            text = name.get("text") or " ".join(
                [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
            )
            if isinstance(text, str) and text.strip():
                return text.strip()
    return None
