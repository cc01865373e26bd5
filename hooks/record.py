"""The patient's record as the rules read it: typed resources sorted by type, and every reference resolved
one way.

Each kind of data has a name, the same as the prefetch key that brings it (`patient`, `conditions`…), or
for resources reached by reference, the kind of reference (`referencedConditions`…). Facts declare the
data they read by these names (hooks/facts.py), and the pipeline reports what it could not have by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from types import MappingProxyType
from typing import TypeVar

import msgspec

from hooks import fhir
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
from hooks.terminology import ValueSets

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


class PatientRecord(msgspec.Struct, frozen=True):
    """The patient's typed FHIR data, as gathered from prefetch (or the FHIR server)."""

    patient: Patient | None = None
    conditions: tuple[Condition, ...] = ()
    coverages: tuple[Coverage, ...] = ()
    encounters: tuple[Encounter, ...] = ()
    service_requests: tuple[ServiceRequest, ...] = ()
    medication_requests: tuple[MedicationRequest, ...] = ()
    procedures: tuple[Procedure, ...] = ()
    references: References = msgspec.field(default_factory=References)

    @classmethod
    def of(
        cls, resources: Iterable[Resource], unresolved: Iterable[str] = (), server: str | None = None
    ) -> PatientRecord:
        """Sort resources by type (a search Bundle may carry includes); index each by 'Type/id' for
        reference resolution. `unresolved` are the references that were wanted but could not be had; `server`
        the EHR's FHIR server (absolute references elsewhere are never matched by id)."""
        references = References(resources, unresolved, server)

        def of_type(kind: type[T]) -> tuple[T, ...]:
            return tuple(r for r in references.of_type(kind.__name__) if isinstance(r, kind))

        patients = of_type(Patient)
        return cls(
            patient=patients[0] if patients else None,
            conditions=of_type(Condition),
            coverages=of_type(Coverage),
            encounters=of_type(Encounter),
            service_requests=of_type(ServiceRequest),
            medication_requests=of_type(MedicationRequest),
            procedures=of_type(Procedure),
            references=references,
        )


# --------------------------------------------------------------------------
# The record indexed once per call: value sets, dates, by what the rules ask
# --------------------------------------------------------------------------

Sets = frozenset[str]


class RecordIndex(msgspec.Struct, frozen=True):
    """The record with each resource's codes resolved once to the value sets they are in and its date
    parsed once, so that a rule asks for "finished visits of the last 90 days" or "procedures coded in
    this set" instead of walking every resource. Built by `index`; what each method reads is in
    INDEX_DATA (tests/test_dependencies.py holds the facts to their declarations through it)."""

    record: PatientRecord
    coded_conditions: tuple[tuple[Condition, Sets], ...]  # conditions whose code is in any value set
    # Encounters newest first, with their dates (None last) and the sets of their types.
    dated_encounters: tuple[tuple[date | None, Encounter], ...]
    encounter_types: Mapping[str, tuple[Encounter, ...]]
    request_codes: Mapping[str, tuple[ServiceRequest, ...]]  # by the sets of ServiceRequest.code
    request_performer_types: Mapping[str, tuple[ServiceRequest, ...]]  # by the sets of performerType
    procedure_codes: Mapping[str, tuple[Procedure, ...]]

    @property
    def patient(self) -> Patient | None:
        return self.record.patient

    @property
    def coverages(self) -> tuple[Coverage, ...]:
        return self.record.coverages

    @property
    def medication_requests(self) -> tuple[MedicationRequest, ...]:
        return self.record.medication_requests

    @property
    def references(self) -> References:
        return self.record.references

    def conditions_in(self, value_set: str) -> list[tuple[Condition, Sets]]:
        """Conditions (any status) whose code is in the value set."""
        return [(c, sets) for c, sets in self.coded_conditions if value_set in sets]

    def encounters_since(self, earliest: date, latest: date) -> Iterator[tuple[date, Encounter]]:
        """Encounters dated within [earliest, latest], newest first."""
        for day, encounter in self.dated_encounters:
            if day is None or day < earliest:
                return
            if day <= latest:
                yield day, encounter

    def encounters_of_type(self, value_set: str) -> tuple[Encounter, ...]:
        return self.encounter_types.get(value_set, ())

    def requests_coded(self, value_set: str) -> tuple[ServiceRequest, ...]:
        return self.request_codes.get(value_set, ())

    def requests_for_performer_type(self, value_set: str) -> tuple[ServiceRequest, ...]:
        return self.request_performer_types.get(value_set, ())

    def procedures_coded(self, value_set: str) -> tuple[Procedure, ...]:
        return self.procedure_codes.get(value_set, ())


# The data each of RecordIndex's readers reads (hooks/record.py names).
INDEX_DATA = {
    "patient": "patient",
    "coverages": "coverages",
    "medication_requests": "medicationRequests",
    "coded_conditions": "conditions",
    "conditions_in": "conditions",
    "dated_encounters": "encounters",
    "encounters_since": "encounters",
    "encounters_of_type": "encounters",
    "requests_coded": "serviceRequests",
    "requests_for_performer_type": "serviceRequests",
    "procedures_coded": "procedures",
}


def index(record: PatientRecord, valuesets: ValueSets) -> RecordIndex:
    """One pass over each kind of resource: its codes' value sets, its date."""
    of = valuesets.concept_sets
    coded = tuple((c, sets) for c in record.conditions if (sets := of(c.code)))
    dated = [(fhir.period_end(e.period), e) for e in record.encounters]
    dated.sort(key=newest_first, reverse=True)
    return RecordIndex(
        record=record,
        coded_conditions=coded,
        dated_encounters=tuple(dated),
        encounter_types=by_set((e, valuesets.sets_of(e.type)) for e in record.encounters),
        request_codes=by_set((r, of(r.code)) for r in record.service_requests),
        request_performer_types=by_set((r, of(r.performerType)) for r in record.service_requests),
        procedure_codes=by_set((p, of(p.code)) for p in record.procedures),
    )


def newest_first(pair: tuple[date | None, Encounter]) -> tuple[bool, date]:
    return pair[0] is not None, pair[0] or date.min


def by_set(coded: Iterable[tuple[T, Sets]]) -> Mapping[str, tuple[T, ...]]:
    """The resources under each value set one of their codes is in (record order kept)."""
    found: dict[str, list[T]] = {}
    for resource, sets in coded:
        for name in sets:
            found.setdefault(name, []).append(resource)
    return MappingProxyType({name: tuple(items) for name, items in found.items()})
