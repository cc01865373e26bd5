"""Value-set membership as constant-time set lookups, prepared once at start-up.

Each normalised coding maps to the names of the value sets that hold it, so a concept is looked
up once whatever number of sets the rules ask about; and the codings met in requests are
remembered with their sets (a bounded memo), so normalising a code is done once per code, not
once per resource that carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from hooks.fhir import Coding, codings
from hooks.model import CodeableConcept

# One CodeableConcept (or none), or several: what a rule asks about.
Concepts = CodeableConcept | Sequence[CodeableConcept | None] | None

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NO_SETS: frozenset[str] = frozenset()
MEMO_SIZE = 16_384  # codings remembered per process; the memo starts over when full

# EHRs send the same code system under its OID as often as under its URL.
SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "urn:oid:2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "urn:oid:2.16.840.1.113883.6.101": "http://nucc.org/provider-taxonomy",
    "urn:oid:2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "urn:oid:2.16.840.1.113883.3.221.5": "https://nahdo.org/sopt",
    # The pre-R4 URL of HL7 v2 table 0276 (appointment reason), as the appointment-book hook examples write it.
    "http://hl7.org/fhir/v2/0276": "http://terminology.hl7.org/CodeSystem/v2-0276",
}


def normalize(system: str, code: str) -> Coding:
    """Canonical system URL; ICD-10-CM upper-cased with its dot ('m5450' → 'M54.50')."""
    system = SYSTEM_ALIASES.get(system.strip(), system.strip())
    code = code.strip()
    if system == ICD10CM:
        code = code.upper()
        if len(code) > 3 and "." not in code:
            code = f"{code[:3]}.{code[3:]}"
    return system, code


class ValueSets:
    """Named sets of (system, code); unknown names are a programming error."""

    def __init__(self, sets: Mapping[str, Iterable[Coding]]) -> None:
        self._sets = {name: frozenset(normalize(*c) for c in codes) for name, codes in sets.items()}
        holders: dict[Coding, set[str]] = {}
        for name, members in self._sets.items():
            for coding in members:
                holders.setdefault(coding, set()).add(name)
        self._holders = {coding: frozenset(names) for coding, names in holders.items()}
        self._memo: dict[Coding, frozenset[str]] = {}  # coding as sent → names of the sets holding it

    def __contains__(self, name: str) -> bool:
        return name in self._sets

    def names(self) -> list[str]:
        return sorted(self._sets)

    def codes(self, name: str) -> frozenset[Coding]:
        return self._sets[name]

    def sets_of_coding(self, system: str, code: str) -> frozenset[str]:
        """Names of the value sets holding this coding (after normalisation)."""
        sent = (system, code)
        found = self._memo.get(sent)
        if found is None:
            found = self._holders.get(normalize(system, code), NO_SETS)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[sent] = found
        return found

    def sets_of(self, concepts: Concepts) -> frozenset[str]:
        """Names of the value sets holding any coding of these CodeableConcepts."""
        if concepts is None or isinstance(concepts, CodeableConcept):
            return self.concept_sets(concepts)
        found = NO_SETS
        for concept in concepts:
            names = self.concept_sets(concept)
            if names:
                found = found | names if found else names
        return found

    def concept_sets(self, concept: CodeableConcept | None) -> frozenset[str]:
        """Names of the value sets holding any coding of one CodeableConcept: the hot path of indexing a
        record, written out (a concept nearly always has one coding, met before)."""
        found = NO_SETS
        if concept is None:
            return found
        memo = self._memo
        for coding in concept.coding:
            system, code = coding.system, coding.code
            if system is None or code is None:
                continue
            names = memo.get((system, code))
            if names is None:
                names = self.sets_of_coding(system, code)
            if names:
                found = found | names if found else names
        return found

    def has_any(self, name: str, found: Iterable[Coding]) -> bool:
        if name not in self._sets:
            raise KeyError(name)
        memo = self._memo
        for sent in found:
            names = memo.get(sent)
            if names is None:
                names = self.sets_of_coding(*sent)
            if name in names:
                return True
        return False

    def matches(self, name: str, concepts: Concepts) -> bool:
        """Whether a CodeableConcept (or any of several) has a coding in the set."""
        if concepts is None and name in self._sets:
            return False
        return self.has_any(name, codings(as_sequence(concepts)))


def as_sequence(concepts: Concepts) -> Sequence[CodeableConcept | None]:
    return (concepts,) if concepts is None or isinstance(concepts, CodeableConcept) else concepts
