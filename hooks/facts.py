"""PatientFacts: what the rules need to know, derived once from the patient's FHIR data.

The rules never read raw FHIR; everything they ask is answered here, with the
value sets and policy windows from guideline_data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import Enum
from typing import Any

from hooks import fhir
from hooks.fhir import Resource
from hooks.knowledge import Knowledge
from hooks.notifications import PriorNotificationOnFile
from hooks.terminology import ValueSets

RED_FLAG_SETS = frozenset({"red-flags-emergent", "red-flags-emergent-non-spine", "red-flags-urgent"})
RED_FLAG_REVIEW_SET = "red-flags-review"
LIVE_COVERAGE_STATUSES = frozenset({"active"})
DONE_STATUSES = frozenset({"completed"})
LIVE_REQUEST_STATUSES = frozenset({"active", "completed", "on-hold"})
PT_ENCOUNTER_STATUSES = frozenset({"finished", "in-progress", "arrived", "triaged", "onleave"})
DONE_PROCEDURE_STATUSES = frozenset({"completed", "in-progress"})


@dataclass(frozen=True)
class PatientRecord:
    """The patient's FHIR data as gathered from prefetch (or the FHIR server)."""

    patient: Resource | None = None
    conditions: tuple[Resource, ...] = ()
    coverages: tuple[Resource, ...] = ()
    encounters: tuple[Resource, ...] = ()
    service_requests: tuple[Resource, ...] = ()
    medication_requests: tuple[Resource, ...] = ()
    procedures: tuple[Resource, ...] = ()

    @classmethod
    def from_resources(cls, resources: Iterable[Resource]) -> PatientRecord:
        """Sort resources by type; a search Bundle may carry OperationOutcomes or includes."""
        by_type: dict[str, list[Resource]] = {}
        for resource in resources:
            by_type.setdefault(str(resource.get("resourceType")), []).append(resource)
        patients = by_type.get("Patient", [])
        return cls(
            patient=patients[0] if patients else None,
            conditions=tuple(by_type.get("Condition", [])),
            coverages=tuple(by_type.get("Coverage", [])),
            encounters=tuple(by_type.get("Encounter", [])),
            service_requests=tuple(by_type.get("ServiceRequest", [])),
            medication_requests=tuple(by_type.get("MedicationRequest", [])),
            procedures=tuple(by_type.get("Procedure", [])),
        )


# An active condition and the names of the value sets its code is in.
CodedCondition = tuple[Resource, frozenset[str]]


class Reason(Enum):
    """What an order (or visit) is for, as far as the rules care."""

    LBP = "low back pain"
    OTHER = "another problem"
    NONE = "no reason given"


@dataclass(frozen=True)
class PatientFacts:
    today: date
    is_adult: bool
    postal_code: str | None
    has_active_lbp: bool
    red_flags: tuple[str, ...]
    medicare_advantage: bool
    msc_done: bool
    recent_pt: bool
    opioid_excluded: bool
    lbp_conditions: tuple[str, ...] = ()  # 'Condition/id' of active LBP diagnoses
    conditions_by_key: Mapping[str, Resource] = field(default_factory=dict)
    active_medication_requests: tuple[Resource, ...] = ()
    service_requests_by_key: Mapping[str, Resource] = field(default_factory=dict)
    coverage_keys: tuple[str, ...] = ()  # 'Coverage/id' of the coverages in force today, as sent
    # Facts the pipeline adds (not from FHIR): the patient's Prior Notifications on file (None: they
    # could not be read), and whether the patient lives outside every MSC region of the directory.
    prior_notifications: tuple[PriorNotificationOnFile, ...] | None = ()
    outside_msc_regions: bool = False


def build_facts(record: PatientRecord, knowledge: Knowledge, today: date) -> PatientFacts:
    vs, policy = knowledge.valuesets, knowledge.policy
    # Each active condition with the value sets its code is in, looked up once for every rule.
    active = [(c, vs.sets_of(c.get("code"))) for c in record.conditions if fhir.is_active_condition(c)]
    lbp_conditions = [c for c, sets in active if "lbp-trigger" in sets]
    facts = PatientFacts(
        today=today,
        is_adult=is_adult(record.patient, policy.adult_age, today),
        postal_code=postal_code(record.patient),
        has_active_lbp=bool(lbp_conditions),
        red_flags=red_flags(active, knowledge, today),
        medicare_advantage=any(is_medicare_advantage(c, knowledge, today) for c in record.coverages),
        msc_done=False,
        recent_pt=recent_pt(record, knowledge, today),
        opioid_excluded=opioid_excluded(active, record, knowledge, today),
        lbp_conditions=tuple(k for c in lbp_conditions if (k := fhir.resource_key(c))),
        conditions_by_key={k: c for c in record.conditions if (k := fhir.resource_key(c))},
        active_medication_requests=tuple(m for m in record.medication_requests if m.get("status") == "active"),
        service_requests_by_key={k: r for r in record.service_requests if (k := fhir.resource_key(r))},
        coverage_keys=tuple(k for c in record.coverages if in_force(c, today) and (k := fhir.resource_key(c))),
    )
    # Whether an MSC visit was "for LBP" needs the facts above.
    return replace(facts, msc_done=msc_done(record, facts, knowledge))


def is_adult(patient: Resource | None, adult_age: int, today: date) -> bool:
    """Certainly adult today; a partial birth date is read at its latest possible day.

    An unknown birth date is not adult: the program is for adults, and a card for a
    child would be wrong.
    """
    born = fhir.parse_date((patient or {}).get("birthDate"), latest=True)
    return born is not None and fhir.add_years(born, adult_age) <= today


def postal_code(patient: Resource | None) -> str | None:
    addresses = [a for a in (patient or {}).get("address") or [] if isinstance(a, dict)]
    home = [a for a in addresses if a.get("use") == "home"] + addresses
    return next((a["postalCode"].strip() for a in home if isinstance(a.get("postalCode"), str)), None)


def red_flags(active: Iterable[CodedCondition], knowledge: Knowledge, today: date) -> tuple[str, ...]:
    """Codes of active red-flag conditions; review-tier findings only when recent."""
    window = timedelta(days=knowledge.policy.red_flag_review_days)
    found: list[str] = []
    for condition, sets in active:
        concept = condition.get("code")
        if not sets.isdisjoint(RED_FLAG_SETS):
            found.append(fhir.concept_text(concept) or "red flag")
        elif RED_FLAG_REVIEW_SET in sets:
            noted = fhir.condition_date(condition)
            if noted is None or noted >= today - window:
                found.append(fhir.concept_text(concept) or "red flag finding")
    return tuple(found)


def is_red_flag_concept(concept: Any, vs: ValueSets) -> bool:
    sets = vs.sets_of(concept)
    return not sets.isdisjoint(RED_FLAG_SETS) or RED_FLAG_REVIEW_SET in sets


def is_medicare_advantage(coverage: Resource, knowledge: Knowledge, today: date) -> bool:
    """An active Coverage whose payer type is Medicare Advantage, or a configured MA plan."""
    if not in_force(coverage, today):
        return False
    if knowledge.valuesets.matches("medicare-advantage-payer", coverage.get("type")):
        return True
    return bool(plan_identifiers(coverage) & knowledge.policy.medicare_advantage_plan_ids)


def in_force(coverage: Resource, today: date) -> bool:
    """Active, and today within its period (when it has one)."""
    if coverage.get("status") not in LIVE_COVERAGE_STATUSES:
        return False
    period = coverage.get("period") or {}
    start, end = fhir.parse_date(period.get("start")), fhir.parse_date(period.get("end"), latest=True)
    return not ((start and start > today) or (end and end < today))


def plan_identifiers(coverage: Resource) -> set[str]:
    """Plan and payer identifiers: Coverage.class values and payor identifiers."""
    values = {c.get("value") for c in coverage.get("class") or [] if isinstance(c, dict)}
    values |= {(p.get("identifier") or {}).get("value") for p in coverage.get("payor") or [] if isinstance(p, dict)}
    return {v for v in values if isinstance(v, str)}


def reason_concepts(resource: Resource, facts: PatientFacts) -> list[Any]:
    """The reason CodeableConcepts of an order or visit, referenced Conditions resolved."""
    concepts = list(resource.get("reasonCode") or [])
    references = list(resource.get("reasonReference") or [])
    references += [d.get("condition") for d in resource.get("diagnosis") or [] if isinstance(d, dict)]
    for ref in references:
        condition = facts.conditions_by_key.get(fhir.reference_key(ref) or "")
        if condition is not None:
            concepts.append(condition.get("code"))
    return [c for c in concepts if fhir.is_coded(c)]


def reason_of(resource: Resource, facts: PatientFacts, vs: ValueSets) -> Reason:
    """Whether an order or visit is for low back pain, by its coded or referenced reason.

    Context-only back codes (e.g. dorsalgia, unspecified) count as LBP only for a
    patient with an active LBP diagnosis.
    """
    coded = reason_concepts(resource, facts)
    if not coded:
        return Reason.NONE
    if any(vs.matches("lbp-trigger", c) for c in coded):
        return Reason.LBP
    if facts.has_active_lbp and any(vs.matches("lbp-context", c) for c in coded):
        return Reason.LBP
    return Reason.OTHER


def is_for_lbp(resource: Resource, facts: PatientFacts, vs: ValueSets) -> bool:
    """For LBP by its reason; with no reason, when the patient has active LBP."""
    reason = reason_of(resource, facts, vs)
    return reason is Reason.LBP or (reason is Reason.NONE and facts.has_active_lbp)


def within(day: date | None, today: date, days: int) -> bool:
    return day is not None and today - timedelta(days=days) <= day <= today + timedelta(days=1)


def msc_done(record: PatientRecord, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """A finished MSC-specialty visit or a completed MSC referral for LBP within the window."""
    vs, days = knowledge.valuesets, knowledge.policy.msc_lookback_days
    for encounter in record.encounters:
        if encounter.get("status") != "finished":
            continue
        specialty = [encounter.get("serviceType"), *(encounter.get("type") or [])]
        if (
            vs.matches("msc-specialty", specialty)
            and within(fhir.period_date(encounter, "period"), facts.today, days)
            and is_for_lbp(encounter, facts, vs)
        ):
            return True
    for request in record.service_requests:
        if request.get("status") not in DONE_STATUSES:
            continue
        is_msc = vs.matches("msc-referral", request.get("code")) or vs.matches(
            "msc-specialty", request.get("performerType")
        )
        if not is_msc:
            continue
        when = fhir.period_date(request, "occurrencePeriod", "occurrenceDateTime", "authoredOn")
        if within(when, facts.today, days) and is_for_lbp(request, facts, vs):
            return True
    return False


def recent_pt(record: PatientRecord, knowledge: Knowledge, today: date) -> bool:
    """A PT evaluation visit or procedure, or an active or completed PT referral, within the window."""
    vs, days = knowledge.valuesets, knowledge.policy.pt_lookback_days
    for encounter in record.encounters:
        if encounter.get("status") not in PT_ENCOUNTER_STATUSES:
            continue
        is_pt = vs.matches("pt-evaluation", encounter.get("type")) or vs.matches(
            "pt-specialty", encounter.get("serviceType")
        )
        if is_pt and within(fhir.period_date(encounter, "period"), today, days):
            return True
    for request in record.service_requests:
        if request.get("status") not in LIVE_REQUEST_STATUSES:
            continue
        is_pt = vs.matches("pt-referral", request.get("code")) or vs.matches(
            "pt-specialty", request.get("performerType")
        )
        if not is_pt:
            continue
        when = fhir.period_date(request, "authoredOn", "occurrencePeriod", "occurrenceDateTime")
        # An active PT referral with no date is still open, so it counts.
        if within(when, today, days) or (when is None and request.get("status") == "active"):
            return True
    return any(
        vs.matches("pt-evaluation", p.get("code")) and within(procedure_date(p), today, days)
        for p in record.procedures
        if p.get("status") in DONE_PROCEDURE_STATUSES
    )


def procedure_date(procedure: Resource) -> date | None:
    return fhir.period_date(procedure, "performedPeriod", "performedDateTime")


def opioid_excluded(active: Iterable[CodedCondition], record: PatientRecord, knowledge: Knowledge, today: date) -> bool:
    """CDC exclusions: active cancer, sickle cell disease, terminal illness, hospice or end-of-life care.

    Hospice or end-of-life encounters and procedures count within the look-back window.
    """
    vs, days = knowledge.valuesets, knowledge.policy.exclusion_lookback_days
    if any("opioid-exclusion-conditions" in sets for _condition, sets in active):
        return True
    for encounter in record.encounters:
        if not vs.matches("opioid-exclusion-procedures", encounter.get("type")):
            continue
        when = fhir.period_date(encounter, "period")
        if when is None or within(when, today, days):
            return True
    for request in record.service_requests:
        if request.get("status") in LIVE_REQUEST_STATUSES and vs.matches(
            "opioid-exclusion-procedures", request.get("code")
        ):
            return True
    return any(
        vs.matches("opioid-exclusion-procedures", p.get("code")) and within(procedure_date(p), today, days)
        for p in record.procedures
        if p.get("status") in DONE_PROCEDURE_STATUSES
    )
