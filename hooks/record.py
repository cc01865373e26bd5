"""The patient's record as the rules read it: typed resources sorted by type, and every reference resolved
one way.

Each kind of data has a name, the same as the prefetch key that brings it (`patient`, `conditions`…), or
for resources reached by reference, the kind of reference (`referencedConditions`…). Facts declare the
data they read by these names (hooks/facts.py), and the pipeline reports what it could not have by them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from hooks.fhir import References
from hooks.model import (
    Condition,
    Coverage,
    Encounter,
    MedicationRequest,
    Patient,
    Procedure,
    Resource,
    ServiceRequest,
)

# The record's fields and the data (prefetch key) each holds.
FIELD_DATA = {
    "patient": "patient",
    "conditions": "conditions",
    "coverages": "coverages",
    "encounters": "encounters",
    "service_requests": "serviceRequests",
    "medication_requests": "medicationRequests",
    "procedures": "procedures",
}
# Data that is not a prefetch key of its own: resources reached by reference (contained, prefetched or
# fetched by reference). Named per kind of resource referenced, like prefetch keys.
REFERENCED_DATA = {
    "Condition": "referencedConditions",
    "Medication": "referencedMedications",
    "PractitionerRole": "referencedPractitioners",
    "Practitioner": "referencedPractitioners",
}
T = TypeVar("T", bound=Resource)
DATA = frozenset(FIELD_DATA.values()) | frozenset(REFERENCED_DATA.values())


@dataclass(frozen=True)
class PatientRecord:
    """The patient's typed FHIR data, as gathered from prefetch (or the FHIR server)."""

    patient: Patient | None = None
    conditions: tuple[Condition, ...] = ()
    coverages: tuple[Coverage, ...] = ()
    encounters: tuple[Encounter, ...] = ()
    service_requests: tuple[ServiceRequest, ...] = ()
    medication_requests: tuple[MedicationRequest, ...] = ()
    procedures: tuple[Procedure, ...] = ()
    references: References = field(default_factory=References)

    @classmethod
    def of(cls, resources: Iterable[Resource], unresolved: Iterable[str] = ()) -> PatientRecord:
        """Sort resources by type (a search Bundle may carry includes); index each by 'Type/id' for
        reference resolution. `unresolved` are the references that were wanted but could not be had."""
        resources = list(resources)
        by_type: dict[type[Resource], list[Resource]] = {}
        for resource in resources:
            by_type.setdefault(type(resource), []).append(resource)

        def of_type(kind: type[T]) -> tuple[T, ...]:
            return tuple(r for r in by_type.get(kind, ()) if isinstance(r, kind))

        patients = of_type(Patient)
        return cls(
            patient=patients[0] if patients else None,
            conditions=of_type(Condition),
            coverages=of_type(Coverage),
            encounters=of_type(Encounter),
            service_requests=of_type(ServiceRequest),
            medication_requests=of_type(MedicationRequest),
            procedures=of_type(Procedure),
            references=References.of(resources, unresolved),
        )
