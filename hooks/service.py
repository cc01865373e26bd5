"""How a CDS service is declared: its discovery metadata beside its judge function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec

from hooks.facts import PatientFacts
from hooks.knowledge import Knowledge
from hooks.model import Appointment, Resource
from hooks.rules import Judgement

# Prefetch templates use CDS Hooks 2.0 tokens only. Keys name hooks/record.py's data.
PATIENT = ("patient", "Patient/{{context.patientId}}")
CONDITIONS = ("conditions", "Condition?patient={{context.patientId}}")
COVERAGES = ("coverages", "Coverage?patient={{context.patientId}}&status=active")
ENCOUNTERS = ("encounters", "Encounter?patient={{context.patientId}}&status=finished")
SERVICE_REQUESTS = ("serviceRequests", "ServiceRequest?patient={{context.patientId}}")
MEDICATION_REQUESTS = ("medicationRequests", "MedicationRequest?patient={{context.patientId}}&status=active")
PROCEDURES = ("procedures", "Procedure?patient={{context.patientId}}")
# Who took part in the patient's visits, with their specialties: the PractitionerRoles an Encounter
# names, and the Practitioners it names with their PractitionerRoles (FHIR R4 _has and _revinclude).
PRACTITIONER_ROLES = ("practitionerRoles", "PractitionerRole?_has:Encounter:participant:patient={{context.patientId}}")
PRACTITIONERS = (
    "practitioners",
    "Practitioner?_has:Encounter:participant:patient={{context.patientId}}&_revinclude=PractitionerRole:practitioner",
)
# Keys an EHR may prefetch but that are never searched when absent: few FHIR servers support _has, and
# the same data is fetched more precisely by reference (PractitionerRole?_id=…, PractitionerRole?
# practitioner=…) for the visits the rules read. Their absence is never missing data by itself.
BY_REFERENCE_KEYS = frozenset({PRACTITIONER_ROLES[0], PRACTITIONERS[0]})


class HookInput(msgspec.Struct, frozen=True):
    """The typed CDS Hooks context of one call: what the services judge."""

    draft_orders: tuple[Resource, ...] = ()
    selections: frozenset[str] = frozenset()  # order-select: 'Type/id' of the newly selected orders
    appointments: tuple[Appointment, ...] = ()  # appointment-book: the proposed Appointments

    def selected_orders(self) -> tuple[Resource, ...]:
        return tuple(r for r in self.draft_orders if r.key in self.selections)


Judge = Callable[[HookInput, PatientFacts, Knowledge], Judgement]
Relevant = Callable[[HookInput, Knowledge], bool]


def always(_hook_input: HookInput, _knowledge: Knowledge) -> bool:
    return True


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]
    judge: Judge
    # Whether the call could produce a card at all, judged from the context alone; when it
    # cannot (an order-select for a lab test), no patient data is needed.
    relevant: Relevant = always
    # Da Vinci CRD: the card topics this service can answer with (discovery offers a configuration
    # option for each one's CRD card type); empty for a service that is not a CRD service.
    crd_topics: tuple[str, ...] = ()
    # Whether the service supplies CRD Coverage Information system actions (order-sign, appointment-book).
    coverage_information: bool = False

    def discovery(self) -> dict[str, object]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }


def prefetch(*templates: tuple[str, str]) -> dict[str, str]:
    return dict(templates)
