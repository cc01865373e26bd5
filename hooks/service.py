"""How a CDS service is declared: its discovery metadata beside its decide function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hooks import fhir
from hooks.coverage import CoverageAssertion
from hooks.decisions import Decision
from hooks.facts import PatientFacts
from hooks.fhir import Resource
from hooks.knowledge import Knowledge

# Prefetch templates use CDS Hooks 2.0 tokens only. Keys name PatientRecord fields.
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


@dataclass(frozen=True)
class HookInput:
    """The validated CDS Hooks context of one call."""

    context: Mapping[str, Any]

    def draft_orders(self) -> list[Resource]:
        return fhir.bundle_resources(self.context.get("draftOrders"))

    def selected_orders(self) -> list[Resource]:
        selected = set(self.context.get("selections") or ())
        return [r for r in self.draft_orders() if fhir.resource_key(r) in selected]

    def appointments(self) -> list[Resource]:
        """appointment-book: the proposed Appointments."""
        found = fhir.bundle_resources(self.context.get("appointments"))
        return [r for r in found if r.get("resourceType") == "Appointment"]


Decide = Callable[[HookInput, PatientFacts, Knowledge], list[Decision]]
Relevant = Callable[[HookInput, Knowledge], bool]
Orders = Callable[[HookInput], list[Resource]]
# Da Vinci CRD Coverage Information: what the program requires of each request resource in scope.
Cover = Callable[[HookInput, PatientFacts, Knowledge], list[CoverageAssertion]]
Needs = Callable[[HookInput, PatientFacts, Knowledge], bool]


def always(_hook_input: HookInput, _knowledge: Knowledge) -> bool:
    return True


def no_orders(_hook_input: HookInput) -> list[Resource]:
    return []


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]
    decide: Decide
    # Whether the call could produce a card at all, judged from the context alone; when it
    # cannot (an order-select for a lab test), no patient data is needed.
    relevant: Relevant = always
    # The orders the service judges (order-select: the selections; order-sign: every draft): their
    # references are resolved, and data without which one cannot be classified matters.
    judged_orders: Orders = no_orders
    # Da Vinci CRD: the card topics this service can answer with (discovery offers a configuration
    # option for each one's CRD card type); empty for a service that is not a CRD service.
    crd_topics: tuple[str, ...] = ()
    # CRD Coverage Information system actions (order-sign, appointment-book); None: none supplied.
    coverage: Cover | None = None
    # Whether this call's rules need the patient's Prior Notifications on file (the pipeline then reads
    # them from storage); judged from the context and the facts, so other calls cost no database read.
    needs_prior_notifications: Needs | None = None

    def discovery(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }


def prefetch(*templates: tuple[str, str]) -> dict[str, str]:
    return dict(templates)
