"""Reading the typed FHIR data: codings, statuses, dates and references.

Every rule reads FHIR through these helpers, so the quirks of real EHR data (partial dates, missing
statuses, contained resources, absolute references) are handled once.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from functools import lru_cache

from hooks.model import (
    Appointment,
    CodeableConcept,
    Condition,
    Encounter,
    Medication,
    MedicationRequest,
    Period,
    Practitioner,
    PractitionerRole,
    Reference,
    Resource,
    ServiceRequest,
)

Coding = tuple[str, str]  # (system, code)
# A carried CodeableConcept, as JSON for a new resource.
ConceptJson = dict[str, object]

ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
DISCARDED_VERIFICATION_STATUSES = frozenset({"entered-in-error", "refuted"})
# Resources that hold contained resources the rules follow '#id' references into.
Container = ServiceRequest | MedicationRequest | Appointment | Encounter | PractitionerRole


def codings(concepts: Iterable[CodeableConcept | None]) -> Iterator[Coding]:
    """(system, code) of each coding of these CodeableConcepts that has both."""
    for concept in concepts:
        if concept is None:
            continue
        for coding in concept.coding:
            if coding.system is not None and coding.code is not None:
                yield coding.system, coding.code.strip()


def carried_concept(concept: CodeableConcept) -> ConceptJson | None:
    """A CodeableConcept to carry into a new resource: its codings (system, code, display) and text,
    without empty members (FHIR allows no empty values); None when nothing is coded."""
    coding: list[dict[str, str]] = []
    for c in concept.coding:
        if c.system is None or c.code is None or not c.system.strip() or not c.code.strip():
            continue
        item = {"system": c.system, "code": c.code}
        if c.display is not None and c.display.strip():
            item["display"] = c.display
        coding.append(item)
    if not coding:
        return None
    carried: ConceptJson = {"coding": coding}
    if concept.text is not None and concept.text.strip():
        carried["text"] = concept.text
    return carried


def concept_text(concepts: Iterable[CodeableConcept | None]) -> str:
    """All human text of these CodeableConcepts: texts and displays."""
    parts: list[str] = []
    for concept in concepts:
        if concept is None:
            continue
        if concept.text is not None:
            parts.append(concept.text)
        parts += [c.display for c in concept.coding if c.display is not None]
    return " ".join(parts)


def is_coded(concept: CodeableConcept | None) -> bool:
    return next(codings((concept,)), None) is not None


def status_code(concept: CodeableConcept | None) -> str | None:
    """The code of a status CodeableConcept such as Condition.clinicalStatus."""
    return next((code for _system, code in codings((concept,))), None)


@lru_cache(maxsize=8192)
def parse_date(value: str | None, *, latest: bool = False) -> date | None:
    """Parse a FHIR date or dateTime, which may be partial (YYYY or YYYY-MM); parsed once per distinct text.

    A partial date is a range; `latest` picks its last day instead of its first,
    so callers can decide conservatively (e.g. "certainly 18 or older").
    """
    if value is None or len(value) < 4:
        return None
    try:
        year = int(value[0:4])
        month = int(value[5:7]) if len(value) >= 7 else (12 if latest else 1)
        day = int(value[8:10]) if len(value) >= 10 else calendar.monthrange(year, month)[1] if latest else 1
        return date(year, month, day)
    except ValueError:
        return None


def period_end(period: Period | None) -> date | None:
    """When a Period ended (else began), latest reading."""
    if period is None:
        return None
    return parse_date(period.end, latest=True) or parse_date(period.start, latest=True)


def first_date(*candidates: Period | str | None) -> date | None:
    """The first date found among these Periods (end, else start) and dateTimes, latest reading."""
    for candidate in candidates:
        found = period_end(candidate) if isinstance(candidate, Period) else parse_date(candidate, latest=True)
        if found is not None:
            return found
    return None


def add_years(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February becomes 1 March."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 3, 1)


@lru_cache(maxsize=16384)
def key_of(reference: str) -> str | None:
    """'Condition/123' from a reference string (absolute URLs and _history stripped)."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return parts[0] or None
    return f"{parts[-2]}/{parts[-1]}"


def reference_key(reference: Reference | None) -> str | None:
    """'Condition/123' from a Reference; None for a local ('#id') or absent one."""
    if reference is None or reference.reference is None or reference.reference.startswith("#"):
        return None
    return key_of(reference.reference)


def reference_type(reference: Reference | None) -> str:
    """The resource type a (non-local) Reference names, or ''."""
    return (reference_key(reference) or "").split("/")[0]


def with_reference(references: Iterable[Reference | None]) -> list[Reference]:
    """The References that carry a reference string."""
    return [r for r in references if r is not None and r.reference is not None]


def is_active_condition(condition: Condition) -> bool:
    """Active, recurrent or relapsed, and not refuted or entered in error.

    A Condition without clinicalStatus counts as active unless it has abated,
    as FHIR R4 allows clinicalStatus to be absent only when unknown.
    """
    if status_code(condition.verificationStatus) in DISCARDED_VERIFICATION_STATUSES:
        return False
    clinical = status_code(condition.clinicalStatus)
    if clinical is None:
        return not condition.has_abated
    return clinical in ACTIVE_CLINICAL_STATUSES


def condition_date(condition: Condition) -> date | None:
    """When the condition was noted: onset, else recorded date (latest reading)."""
    onset = condition.onsetDateTime or (condition.onsetPeriod.start if condition.onsetPeriod else None)
    return parse_date(onset, latest=True) or parse_date(condition.recordedDate, latest=True)


def contained(container: Resource | None, reference: str) -> Resource | None:
    """The resource contained in `container` that a local reference ('#id') points to."""
    if not isinstance(container, Container) or not reference.startswith("#"):
        return None
    wanted = reference[1:]
    return next((item for item in container.contained if item.id == wanted), None)


class References:
    """Resolves a Reference the one way every rule does: a resource contained in the referring resource
    ('#id'), else one the call gathered (prefetched, fetched by search, or fetched by reference), by its
    relative or absolute reference.

    The gathered resources are indexed by id per resource type on the first lookup of that type: a call
    looks up Conditions and practitioners, rarely anything else, and never needs its thousands of visits
    keyed. `unresolved` holds the 'Type/id' keys that were wanted but could not be had (no FHIR server, a
    failed fetch): a rule can tell "not there" from "not known".
    """

    def __init__(
        self, resources: Iterable[Resource] = (), unresolved: Iterable[str] = (), server: str | None = None
    ) -> None:
        # The EHR's FHIR server (the request's fhirServer): an absolute reference to another server names a
        # resource there, never the EHR's resource that happens to share its id. Without one, an absolute
        # reference is matched by type and id, as prefetch alone cannot say which server it meant.
        self.server = server.rstrip("/") if server else None
        # A trace: each 'Type/id' looked up on another server: data that cannot be had, never fetched.
        self.foreign: set[str] = set()
        by_type: dict[str, list[Resource]] = {}
        for resource in resources:
            by_type.setdefault(resource.resource_type, []).append(resource)
        self._by_type = by_type
        self._by_id: dict[str, dict[str, Resource]] = {}
        wanted = frozenset(unresolved)
        self.unresolved = frozenset(key for key in wanted if self.get(key) is None)
        # A trace: each 'Type/id' a rule looked up and did not find. The pipeline fetches these and, when
        # they cannot be had, judges again with them unresolved: what to fetch is what the rules read.
        self.not_found: set[str] = set()
        roles: dict[str, list[PractitionerRole]] = {}
        for role in by_type.get("PractitionerRole", ()):
            practitioner = reference_key(role.practitioner) if isinstance(role, PractitionerRole) else None
            if practitioner and isinstance(role, PractitionerRole):
                roles.setdefault(practitioner, []).append(role)
        self._roles = {key: tuple(found) for key, found in roles.items()}

    def of_type(self, resource_type: str) -> Sequence[Resource]:
        """The gathered resources of one type, in the order they came."""
        return self._by_type.get(resource_type, ())

    def get(self, key: str) -> Resource | None:
        """The gathered resource with this 'Type/id' (the first of duplicates from two searches)."""
        kind, _, rid = key.partition("/")
        ids = self._by_id.get(kind)
        if ids is None:
            ids = {}
            for resource in self._by_type.get(kind, ()):
                if resource.id is not None:
                    ids.setdefault(resource.id, resource)
            self._by_id[kind] = ids
        return ids.get(rid)

    def elsewhere(self, reference: str) -> str | None:
        """The 'Type/id' of an absolute reference to another server than the EHR's, else None."""
        if self.server is None or not reference.startswith(("http://", "https://")):
            return None
        key = key_of(reference)
        base = reference.split("/_history/")[0].rstrip("/").removesuffix(f"/{key}")
        return key if key and base.rstrip("/") != self.server else None

    def resolve(self, reference: Reference | None, container: Resource | None = None) -> Resource | None:
        """The resource a Reference points to, or None when it is neither contained nor gathered."""
        if reference is None or reference.reference is None:
            return None
        if reference.reference.startswith("#"):
            return contained(container, reference.reference)
        if (foreign := self.elsewhere(reference.reference)) is not None:
            self.foreign.add(foreign)
            return None
        key = key_of(reference.reference) or ""
        found = self.get(key)
        if found is None and "/" in key:
            self.not_found.add(key)
        return found

    def peek(self, reference: Reference | None, container: Resource | None = None) -> Resource | None:
        """The resource, if at hand, without noting it as wanted: for details no answer hinges on (a role's
        practitioner and organization, looked up for their NPIs and names)."""
        if reference is None or reference.reference is None:
            return None
        if reference.reference.startswith("#"):
            return contained(container, reference.reference)
        if self.elsewhere(reference.reference) is not None:
            return None
        return self.get(key_of(reference.reference) or "")

    def is_unknown(self, reference: Reference | None) -> bool:
        """Wanted but could not be had (or on another server): the rules must not read its absence as 'no such
        resource'."""
        if reference is not None and reference.reference is not None and self.elsewhere(reference.reference):
            return True
        return (reference_key(reference) or "") in self.unresolved

    def roles_of(self, practitioner: Resource | None) -> tuple[PractitionerRole, ...]:
        """The PractitionerRoles gathered for a Practitioner (a contained Practitioner has none)."""
        if not isinstance(practitioner, Practitioner) or practitioner.key is None:
            return ()
        return self._roles.get(practitioner.key, ())


def medication_concepts(request: MedicationRequest, references: References) -> list[CodeableConcept]:
    """What a MedicationRequest prescribes: coded inline, or its Medication resolved, with the ingredients a
    compounded Medication names."""
    concepts: list[CodeableConcept] = []
    if request.medicationCodeableConcept is not None:
        concepts.append(request.medicationCodeableConcept)
    medication = references.resolve(request.medicationReference, request)
    if isinstance(medication, Medication):
        concepts += [c for c in (medication.code, *(i.itemCodeableConcept for i in medication.ingredient)) if c]
    return concepts
