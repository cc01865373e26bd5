"""What each fact reads is declared once (hooks/facts.py `@reads`), and what makes a card unsafe to show on
missing data is derived from those declarations (hooks/decisions.py CARD_DEPENDS_ON). These tests hold the
facts to their declarations: each fact is run on a record that lets it read all it can, through a spy that
notes every kind of data touched (hooks/record.py names); reading undeclared data fails."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import msgspec
import pytest

from cds_service.pipeline.decode import decode
from hooks import facts as f
from hooks.fhir import References
from hooks.knowledge import Knowledge
from hooks.model import Resource
from hooks.record import DATA, INDEX_DATA, REFERENCED_DATA, PatientRecord, RecordIndex, index
from tests.builders import (
    CPT,
    NUCC,
    SPINE_SURGEON,
    clinical_today,
    medication_request,
    patient,
    service_request,
)


class SpyReferences:
    """The record's References, noting the kind of each resource looked up (resolved, peeked, or a
    practitioner's roles)."""

    def __init__(self, real: References, read: set[str]) -> None:
        self.real, self.read = real, read

    def note(self, reference: Any) -> None:
        key = getattr(reference, "reference", None) or ""
        kind = key.split("/")[-2] if "/" in key else ""
        if kind in REFERENCED_DATA:
            self.read.add(REFERENCED_DATA[kind])

    def resolve(self, reference: Any, container: Resource | None = None) -> Resource | None:
        self.note(reference)
        return self.real.resolve(reference, container)

    def peek(self, reference: Any, container: Resource | None = None) -> Resource | None:
        self.note(reference)
        return self.real.peek(reference, container)

    def roles_of(self, practitioner: Resource | None) -> Any:
        self.read.add("referencedPractitioners")
        return self.real.roles_of(practitioner)

    def is_unknown(self, reference: Any) -> bool:
        self.note(reference)
        return self.real.is_unknown(reference)


class SpyIndex:
    """A RecordIndex that notes the data each of its readers reads (INDEX_DATA)."""

    def __init__(self, real: RecordIndex, read: set[str]) -> None:
        self._real, self._read = real, read
        self.references = SpyReferences(real.references, read)

    def __getattr__(self, name: str) -> Any:
        if name not in INDEX_DATA:
            raise AssertionError(f"a fact read RecordIndex.{name}, which INDEX_DATA does not name")
        self._read.add(INDEX_DATA[name])
        return getattr(self._real, name)


def typed(raw: dict[str, Any]) -> Resource:
    decoded = decode(raw)
    assert decoded.resource is not None, decoded.problem
    return decoded.resource


def rich_record() -> PatientRecord:
    """A record on which every fact reads all it can: recent visits, referrals and prescriptions that name
    their reasons, participants and Medications by reference (not all of them at hand)."""
    builder = patient(45).with_lbp().with_coverage("5").with_coverage("111", order=2)
    builder.with_encounter(participant="PractitionerRole/role-1", reason_reference="Condition/c-ref", days=20)
    builder.with_encounter(service_type=(NUCC, SPINE_SURGEON), reason_reference="Condition/c-ref", days=40)
    builder.with_encounter(participant="Practitioner/dr-1", days=10, status="in-progress")
    builder.with_procedure((CPT, "97161"), days=300)
    msc = service_request("385800002", status="completed", reason=None, reason_reference="Condition/c-ref")
    builder.with_service_request(msc)
    old = medication_request(status="active", medication="m-1", authored="2020-01-01")
    old["reasonReference"] = [{"reference": "Condition/c-ref"}]
    builder.with_medication(old)
    resources = []
    for value in builder.prefetch().values():
        raws = [e["resource"] for e in value["entry"]] if value["resourceType"] == "Bundle" else [value]
        resources += [typed(raw) for raw in raws]
    return PatientRecord.of(resources)


Fact = Callable[[SpyIndex, f.PatientFacts, Knowledge, date], object]


def active(ix: Any, today: date) -> list[f.CodedCondition]:
    return [(c, sets) for c, sets in ix.coded_conditions if f.fhir.is_active_condition(c)]


# How to run each fact on its own, with the spy (facts computed in build_facts from the active conditions
# run through the same steps build_facts takes).
RUN: dict[str, Fact] = {
    "is_adult": lambda ix, _facts, k, t: f.is_adult(ix.patient, k.policy.adult_age, t),
    "postal_code": lambda ix, _facts, _k, _t: f.postal_code(ix.patient),
    "deceased": lambda ix, _facts, _k, _t: f.is_deceased(ix.patient),
    "msc_access": lambda ix, _facts, k, _t: f.has_msc_access(f.postal_code(ix.patient), k),
    "has_active_lbp": lambda ix, _facts, _k, t: any("lbp-trigger" in sets for _c, sets in active(ix, t)),
    "lbp_conditions": lambda ix, _facts, _k, t: [c for c, sets in active(ix, t) if "lbp-trigger" in sets],
    "red_flags": lambda ix, _facts, k, t: f.red_flags(active(ix, t), k, t),
    "red_flag_findings": lambda ix, _facts, k, t: f.red_flag_findings(active(ix, t), k, t),
    "opioid_use_disorder": lambda ix, _facts, _k, t: any("opioid-use-disorder" in s for _c, s in active(ix, t)),
    "primary_coverage": lambda ix, _facts, k, t: f.primary_coverage(ix, k, t),  # type: ignore[arg-type]
    "medicare_advantage": lambda ix, _facts, k, t: f.primary_is_medicare_advantage(
        f.primary_coverage(ix, k, t),  # type: ignore[arg-type]
        ix,  # type: ignore[arg-type]
        k,
        t,
    ),
    "msc_done": lambda ix, facts, k, _t: f.msc_done(ix, facts, k),  # type: ignore[arg-type]
    "established_spine_care": lambda ix, facts, k, _t: f.spine_surgeons_seen(ix, facts, k),  # type: ignore[arg-type]
    "spine_surgeons_seen": lambda ix, facts, k, _t: f.spine_surgeons_seen(ix, facts, k),  # type: ignore[arg-type]
    "after_lumbar_surgery": lambda ix, _facts, k, _t: f.after_lumbar_surgery(ix, k),  # type: ignore[arg-type]
    "recent_pt": lambda ix, _facts, k, t: f.recent_pt(ix, k, t),  # type: ignore[arg-type]
    "opioid_excluded": lambda ix, _facts, k, t: f.opioid_excluded(active(ix, t), ix, k, t),  # type: ignore[arg-type]
    "long_term_opioid": lambda ix, facts, k, _t: f.long_term_opioid(
        msgspec.structs.replace(facts, active_medication_requests=ix.medication_requests), k
    ),
    "order_reason": lambda _ix, facts, k, _t: f.reason_of(
        typed(service_request(reason=None, reason_reference="Condition/c-ref")), facts, k.valuesets
    ),
}


def test_every_declared_fact_can_be_run_alone_and_names_only_known_data():
    assert set(RUN) == set(FACT_READS := f.FACT_READS), set(RUN) ^ set(FACT_READS)
    assert all(reads <= DATA for reads in FACT_READS.values())


@pytest.mark.parametrize("name", sorted(f.FACT_READS))
def test_a_fact_reads_only_the_data_it_declares(content, name):
    knowledge, today = content.knowledge, clinical_today()
    record = rich_record()
    read: set[str] = set()
    spy = SpyIndex(index(record, knowledge.valuesets), read)
    facts = msgspec.structs.replace(f.build_facts(record, knowledge, today), references=spy.references)
    RUN[name](spy, facts, knowledge, today)
    undeclared = read - f.FACT_READS[name]
    assert not undeclared, f"{name} reads {sorted(undeclared)} but declares only {sorted(f.FACT_READS[name])}"
