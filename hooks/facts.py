"""PatientFacts: what the rules need to know, derived once from the patient's typed record.

The rules never read FHIR beyond hooks/model.py's types; everything they ask of the record is answered
here, with the value sets and policy windows from guideline_data. References (a reason Condition, a
visit's practitioner, a prescription's Medication) are resolved one way, by `PatientRecord.references`:
contained in the referring resource, else gathered by the pipeline. Nothing here fetches: a reference a
fact follows and does not find is noted by `References`, and the pipeline fetches what was noted.

Each fact declares the data it reads (`@reads`): the names of hooks/record.py (`encounters`,
`referencedPractitioners`…), counting what the facts it builds on read. hooks/decisions.py derives from
these which missing data can make which card wrong; tests/test_dependencies.py fails when a fact reads
data it did not declare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from enum import Enum
from functools import lru_cache
from typing import ParamSpec, TypeVar

import msgspec

from hooks import fhir
from hooks.fhir import References
from hooks.knowledge import Knowledge
from hooks.model import (
    Appointment,
    CodeableConcept,
    Condition,
    Coverage,
    Encounter,
    MedicationRequest,
    Patient,
    Practitioner,
    PractitionerRole,
    Procedure,
    Reference,
    Resource,
    ServiceRequest,
)
from hooks.notifications import PriorNotificationOnFile
from hooks.record import DATA, PatientRecord, RecordIndex, index
from hooks.terminology import ICD10CM, ValueSets, normalize

RED_FLAG_SETS = ("red-flags-emergent", "red-flags-emergent-non-spine", "red-flags-urgent")
RED_FLAG_REVIEW_SET = "red-flags-review"
LIVE_COVERAGE_STATUSES = frozenset({"active"})
DONE_STATUSES = frozenset({"completed"})
LIVE_REQUEST_STATUSES = frozenset({"active", "completed", "on-hold"})
PT_ENCOUNTER_STATUSES = frozenset({"finished", "in-progress", "arrived", "triaged", "onleave"})
DONE_PROCEDURE_STATUSES = frozenset({"completed", "in-progress"})
LIVE_MEDICATION_STATUSES = frozenset({"active"})

# --------------------------------------------------------------------------
# What each fact reads
# --------------------------------------------------------------------------

FACT_READS: dict[str, frozenset[str]] = {}
P = ParamSpec("P")
R = TypeVar("R")


def reads(*data: str, fact: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Declare the data (hooks/record.py names) a fact reads, itself or through the facts it builds on."""
    unknown = set(data) - DATA
    if unknown:
        raise ValueError(f"unknown data {sorted(unknown)}")

    def register(function: Callable[P, R]) -> Callable[P, R]:
        FACT_READS[fact or function.__name__] = frozenset(data)
        return function

    return register


# An active condition and the names of the value sets its code is in.
CodedCondition = tuple[Condition, frozenset[str]]


class Reason(Enum):
    """What an order (or visit) is for, as far as the rules care."""

    LBP = "low back pain"
    OTHER = "another problem"
    NONE = "no reason given"


class PatientFacts(msgspec.Struct, frozen=True):
    """What the rules know of the patient. A frozen msgspec Struct, not a dataclass: built (and copied with one
    fact changed) on every call, which a frozen dataclass of this many fields made cost 9 µs, this 2."""

    today: date
    is_adult: bool
    postal_code: str | None
    has_active_lbp: bool
    red_flags: tuple[str, ...]  # emergent or urgent red-flag conditions: silence
    medicare_advantage: bool  # the primary coverage is Medicare Advantage: exempt from the MSC step
    msc_done: bool
    recent_pt: bool
    opioid_excluded: bool
    red_flag_findings: tuple[str, ...] = ()  # review-tier findings noted recently: rule out emergencies first
    # Already under a spine surgeon's care for LBP (a finished visit within the window): the spine
    # surgeons seen, as 'Practitioner/id' or 'PractitionerRole/id' keys, and whether any visit was found.
    established_spine_care: bool = False
    spine_surgeons_seen: frozenset[str] = frozenset()
    after_lumbar_surgery: bool = False  # status codes or a lumbar spine surgery Procedure
    msc_access: bool | None = None  # lives in an MSC region (None: no postal code on record)
    opioid_use_disorder: bool = False  # an active opioid use disorder diagnosis
    long_term_opioid: bool = False  # an active opioid analgesic prescribed longer ago than the window
    lbp_conditions: tuple[Condition, ...] = ()  # active LBP diagnoses
    references: References = msgspec.field(default_factory=References)
    active_medication_requests: tuple[MedicationRequest, ...] = ()
    primary_coverage: Coverage | None = None  # the primary coverage in force, when it can be told
    # A fact the pipeline adds (not from FHIR): the patient's Prior Notifications on file (None: they
    # could not be read).
    prior_notifications: tuple[PriorNotificationOnFile, ...] | None = ()
    deceased: bool = False  # recorded as deceased (deceasedBoolean true, or a deceasedDateTime)

    @property
    def is_initial_spine_visit(self) -> bool:
        """A visit to a spine surgeon now would be the patient's initial one for LBP (what the program gates)."""
        return not (self.established_spine_care or self.after_lumbar_surgery)

    @property
    def primary_coverage_key(self) -> str | None:
        return self.primary_coverage.key if self.primary_coverage is not None else None

    @property
    def lbp_condition_keys(self) -> tuple[str, ...]:
        return tuple(key for c in self.lbp_conditions if (key := c.key))


def build_facts(record: PatientRecord, knowledge: Knowledge, today: date) -> PatientFacts:
    found = index(record, knowledge.valuesets)
    # Each active condition coded in a value set, with the sets, looked up once for every rule.
    active = [(c, sets) for c, sets in found.coded_conditions if fhir.is_active_condition(c)]
    lbp = tuple(c for c, sets in active if "lbp-trigger" in sets)
    code = postal_code(found.patient)
    primary = primary_coverage(found, knowledge, today)
    facts = PatientFacts(
        today=today,
        is_adult=is_adult(found.patient, knowledge.policy.adult_age, today),
        deceased=is_deceased(found.patient),
        postal_code=code,
        has_active_lbp=bool(lbp),
        red_flags=red_flags(active, knowledge, today),
        red_flag_findings=red_flag_findings(active, knowledge, today),
        medicare_advantage=primary_is_medicare_advantage(primary, found, knowledge, today),
        msc_done=False,
        recent_pt=recent_pt(found, knowledge, today),
        opioid_excluded=opioid_excluded(active, found, knowledge, today),
        after_lumbar_surgery=after_lumbar_surgery(found, knowledge),
        msc_access=has_msc_access(code, knowledge),
        opioid_use_disorder=any("opioid-use-disorder" in sets for _c, sets in active),
        lbp_conditions=lbp,
        references=record.references,
        active_medication_requests=tuple(m for m in record.medication_requests if m.status in LIVE_MEDICATION_STATUSES),
        primary_coverage=primary,
    )
    # Whether a visit was "for LBP", and whether an active drug is an opioid analgesic, need the facts above.
    surgeons = spine_surgeons_seen(found, facts, knowledge)
    return msgspec.structs.replace(
        facts,
        msc_done=msc_done(found, facts, knowledge),
        established_spine_care=bool(surgeons),
        spine_surgeons_seen=frozenset(k for k in surgeons if k),
        long_term_opioid=long_term_opioid(facts, knowledge),
    )


# Facts computed from the conditions alone (in build_facts, from the active conditions and their sets).
for _name in ("has_active_lbp", "lbp_conditions", "red_flags", "red_flag_findings", "opioid_use_disorder"):
    FACT_READS[_name] = frozenset({"conditions"})


@reads("patient")
def is_adult(patient: Patient | None, adult_age: int, today: date) -> bool:
    """Certainly adult today; a partial birth date is read at its latest possible day.

    An unknown birth date is not adult: the program is for adults, and a card for a
    child would be wrong.
    """
    born = fhir.parse_date(patient.birthDate if patient else None, latest=True)
    return born is not None and fhir.add_years(born, adult_age) <= today


@reads("patient", fact="deceased")
def is_deceased(patient: Patient | None) -> bool:
    """Recorded as deceased: `deceasedBoolean` true, or any `deceasedDateTime` (FHIR R4 Patient.deceased[x])."""
    return patient is not None and (patient.deceasedBoolean is True or patient.deceasedDateTime is not None)


@reads("patient")
def postal_code(patient: Patient | None) -> str | None:
    addresses = patient.address if patient else ()
    home = [a for a in addresses if a.use == "home"] + list(addresses)
    return next((a.postalCode.strip() for a in home if a.postalCode is not None), None)


@reads("patient", fact="msc_access")
def has_msc_access(code: str | None, knowledge: Knowledge) -> bool | None:
    """Whether a member living at this postal code has MSC access: it lies in one of the directory's regions.

    None when the postal code is unknown: the rules then keep the program's default path.
    """
    if not code:
        return None
    return code[: knowledge.msc_prefix_length] in knowledge.msc_postal_prefixes


# --------------------------------------------------------------------------
# Red flags
# --------------------------------------------------------------------------


def encounter_character(concepts: Sequence[CodeableConcept | None]) -> str | None:
    """The 7th character of the concept's ICD-10-CM code (initial, subsequent encounter or sequela), if any.

    Only 7-character codes ending in a letter carry one (S32.010A, M80.08XD, M48.56XS).
    """
    for system, code in fhir.codings(concepts):
        system, code = normalize(system, code)
        bare = code.replace(".", "")
        if system == ICD10CM and len(bare) == 7 and bare[-1].isalpha():
            return bare[-1].upper()
    return None


def counts_as_red_flag(condition: Condition, tier: str, knowledge: Knowledge, today: date) -> bool:
    """An active red-flag condition that is a present problem, not history.

    A subsequent-encounter or sequela code (7th character D, G, K, P, S…) is follow-up of a
    problem already treated; an initial-encounter code counts when noted within the tier's window
    (the same condition coded again as a new problem is a new Condition, noted recently); a code
    without an encounter character counts while active.
    """
    policy = knowledge.policy
    character = encounter_character((condition.code,))
    if character is None:
        return True
    if character in policy.later_encounter_characters:
        return False
    noted = fhir.condition_date(condition)
    return noted is None or within(noted, today, policy.red_flag_initial_days[tier])


def red_flags(active: Iterable[CodedCondition], knowledge: Knowledge, today: date) -> tuple[str, ...]:
    """Texts of active emergent or urgent red-flag conditions (history excluded)."""
    found: list[str] = []
    for condition, sets in active:
        tier = next((t for t in RED_FLAG_SETS if t in sets), None)
        if tier and counts_as_red_flag(condition, tier, knowledge, today):
            found.append(fhir.concept_text((condition.code,)) or "red flag")
    return tuple(found)


def red_flag_findings(active: Iterable[CodedCondition], knowledge: Knowledge, today: date) -> tuple[str, ...]:
    """Texts of review-tier findings (urinary retention, saddle anesthesia, foot drop…) noted recently."""
    days = knowledge.policy.red_flag_review_days
    found: list[str] = []
    for condition, sets in active:
        if RED_FLAG_REVIEW_SET in sets and sets.isdisjoint(RED_FLAG_SETS):
            noted = fhir.condition_date(condition)
            if noted is None or within(noted, today, days):
                found.append(fhir.concept_text((condition.code,)) or "red flag finding")
    return tuple(found)


def is_red_flag_reason(concept: CodeableConcept, knowledge: Knowledge) -> bool:
    """An order reason that is an emergent or urgent red flag (not one coded as follow-up or sequela)."""
    sets = knowledge.valuesets.sets_of(concept)
    if all(tier not in sets for tier in RED_FLAG_SETS):
        return False
    return encounter_character((concept,)) not in knowledge.policy.later_encounter_characters


def is_red_flag_finding(concept: CodeableConcept, knowledge: Knowledge) -> bool:
    return RED_FLAG_REVIEW_SET in knowledge.valuesets.sets_of(concept)


# --------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------


def in_force(coverage: Coverage, today: date) -> bool:
    """Active and within its period today."""
    if coverage.status not in LIVE_COVERAGE_STATUSES:
        return False
    period = coverage.period
    start = fhir.parse_date(period.start) if period else None
    end = fhir.parse_date(period.end, latest=True) if period else None
    return not ((start and start > today) or (end and end < today))


def is_medicare_advantage(coverage: Coverage, knowledge: Knowledge, today: date) -> bool:
    """A Coverage in force whose payer type is Medicare Advantage, a configured MA plan, or, where its type
    leaves it open, a plan or group named Medicare Advantage (Medicare Part C)."""
    if not in_force(coverage, today):
        return False
    if knowledge.valuesets.matches("medicare-advantage-payer", coverage.type):
        return True
    if plan_identifiers(coverage) & knowledge.policy.medicare_advantage_plan_ids:
        return True
    return type_leaves_medicare_advantage_open(coverage, knowledge) and plan_named_medicare_advantage(
        coverage, knowledge
    )


def type_leaves_medicare_advantage_open(coverage: Coverage, knowledge: Knowledge) -> bool:
    """No coded type, or only Medicare codes that do not say which (medicare-unspecified-payer): a coded type
    that says otherwise is never overruled by a name."""
    coded = list(fhir.codings((coverage.type,)))
    vs = knowledge.valuesets
    return all(vs.has_any("medicare-unspecified-payer", [coding]) for coding in coded)


def plan_named_medicare_advantage(coverage: Coverage, knowledge: Knowledge) -> bool:
    """A Coverage.class (plan, group…) whose name or value says Medicare Advantage or Medicare Part C, or classes
    that say it together (group "Medicare" and plan "Part C", as the CMS Blue Button API sends it)."""
    texts = [text for c in coverage.class_ for text in (c.name, c.value) if text]
    policy = knowledge.policy
    if any(p.search(text) for p in policy.medicare_advantage_text for text in texts):
        return True
    together = policy.medicare_advantage_text_together
    return any(all(any(p.search(text) for text in texts) for p in entry) for entry in together)


def medical_coverages(record: RecordIndex, knowledge: Knowledge, today: date) -> list[Coverage]:
    """The coverages in force that pay for medical care: a stand-alone dental, vision or pharmacy benefit
    (`non-medical-coverage`) never decides which coverage pays first."""
    vs = knowledge.valuesets
    return [c for c in record.coverages if in_force(c, today) and not vs.matches("non-medical-coverage", c.type)]


@reads("coverages")
def primary_coverage(record: RecordIndex, knowledge: Knowledge, today: date) -> Coverage | None:
    """The coverage that pays first for medical care: the one in force, or among several the lowest
    Coverage.order, else the plan's own coverage (its payor identifier configured in policy.yaml). None when
    it cannot be told.
    """
    live = medical_coverages(record, knowledge, today)
    if len(live) <= 1:
        return live[0] if live else None
    ordered = sorted((c.order, index) for index, c in enumerate(live) if c.order is not None)
    if ordered and (len(ordered) == 1 or ordered[0][0] < ordered[1][0]):
        return live[ordered[0][1]]
    own = [c for c in live if payor_identifiers(c) & knowledge.policy.plan_payer_ids]
    return own[0] if len(own) == 1 else None


@reads("coverages", fact="medicare_advantage")
def primary_is_medicare_advantage(
    primary: Coverage | None, record: RecordIndex, knowledge: Knowledge, today: date
) -> bool:
    """Exempt from the MSC step: the primary coverage (primary_coverage's answer) is Medicare Advantage.

    When the primary coverage cannot be told (several in force, no order, none the plan's own), only
    coverages that are all Medicare Advantage exempt: an MA coverage that may be secondary does not.
    """
    if primary is not None:
        return is_medicare_advantage(primary, knowledge, today)
    live = medical_coverages(record, knowledge, today)
    return bool(live) and all(is_medicare_advantage(c, knowledge, today) for c in live)


def payor_identifiers(coverage: Coverage) -> set[str]:
    return {p.identifier.value for p in coverage.payor if p.identifier is not None and p.identifier.value is not None}


def plan_identifiers(coverage: Coverage) -> set[str]:
    """Plan and payer identifiers: Coverage.class values and payor identifiers."""
    return {c.value for c in coverage.class_ if c.value is not None} | payor_identifiers(coverage)


# --------------------------------------------------------------------------
# Reasons
# --------------------------------------------------------------------------

# What has a reason: orders, visits and proposed appointments.
Reasoned = (ServiceRequest, MedicationRequest, Encounter, Appointment)


def reason_references(resource: Resource) -> list[Reference]:
    """The Condition references that give an order's or visit's reason (incl. Encounter.diagnosis)."""
    if not isinstance(resource, Reasoned):
        return []
    found: list[Reference | None] = list(resource.reasonReference)
    if isinstance(resource, Encounter):
        found += [d.condition for d in resource.diagnosis]
    return fhir.with_reference(found)


def reason_concepts(resource: Resource, references: References) -> list[CodeableConcept]:
    """The reason CodeableConcepts of an order or visit, referenced Conditions resolved (contained ones too)."""
    concepts: list[CodeableConcept] = list(resource.reasonCode) if isinstance(resource, Reasoned) else []
    for ref in reason_references(resource):
        condition = references.resolve(ref, resource)
        if isinstance(condition, Condition) and condition.code is not None:
            concepts.append(condition.code)
    return [c for c in concepts if fhir.is_coded(c)]


def reason_of(resource: Resource, facts: PatientFacts, vs: ValueSets) -> Reason:
    """Whether an order or visit is for low back pain, by its coded or referenced reason.

    Context-only back codes (e.g. dorsalgia, unspecified) and generic pain (chronic pain, pain unspecified)
    count as LBP only for a patient with an active LBP diagnosis.
    """
    coded = reason_concepts(resource, facts.references)
    if not coded:
        return Reason.NONE
    if any(vs.matches("lbp-trigger", c) for c in coded):
        return Reason.LBP
    if facts.has_active_lbp and any(vs.matches("lbp-context", c) or vs.matches("generic-pain", c) for c in coded):
        return Reason.LBP
    return Reason.OTHER


def is_for_lbp(resource: Resource, facts: PatientFacts, vs: ValueSets) -> bool:
    """For LBP by its reason; with no reason, when the patient has active LBP."""
    reason = reason_of(resource, facts, vs)
    return reason is Reason.LBP or (reason is Reason.NONE and facts.has_active_lbp)


def within(day: date | None, today: date, days: int) -> bool:
    return day is not None and today - timedelta(days=days) <= day <= today + timedelta(days=1)


# --------------------------------------------------------------------------
# Who a visit or order was with
# --------------------------------------------------------------------------


def practitioner_specialties(
    reference: Reference | None, container: Resource, references: References
) -> list[CodeableConcept]:
    """The specialty concepts of the practitioner a Reference names.

    A PractitionerRole: its specialty. A Practitioner: the specialty of each of its PractitionerRoles
    and its qualification codes (US Core allows NUCC taxonomy there). Anything else: none.
    """
    resource = references.resolve(reference, container)
    if isinstance(resource, PractitionerRole):
        return list(resource.specialty)
    if not isinstance(resource, Practitioner):
        return []
    found = [q.code for q in resource.qualification if q.code is not None]
    for role in references.roles_of(resource):
        found += list(role.specialty)
    return found


def participants(encounter: Encounter) -> list[Reference]:
    """References to the people who took part in a visit (Encounter.participant.individual)."""
    return fhir.with_reference(p.individual for p in encounter.participant)


def visit_specialties(encounter: Encounter, references: References) -> list[CodeableConcept]:
    """What a visit says about its specialty: serviceType, type, and each participant's specialty."""
    concepts: list[CodeableConcept] = [c for c in (encounter.serviceType, *encounter.type) if c is not None]
    for individual in participants(encounter):
        concepts += practitioner_specialties(individual, encounter, references)
    return concepts


def participants_in(encounter: Encounter, value_set: str, knowledge: Knowledge, references: References) -> list[str]:
    """Keys ('Practitioner/x', 'PractitionerRole/y') of the visit's participants whose specialty is in the set."""
    vs = knowledge.valuesets
    found: list[str | None] = []
    for individual in participants(encounter):
        specialties = practitioner_specialties(individual, encounter, references)
        if vs.matches(value_set, specialties):
            found.append(fhir.reference_key(individual))
            resolved = references.resolve(individual, encounter)
            if isinstance(resolved, PractitionerRole):
                found.append(fhir.reference_key(resolved.practitioner))
    return [key for key in found if key]


def is_visit_in(encounter: Encounter, value_set: str, knowledge: Knowledge, references: References) -> bool:
    """A visit whose serviceType, type or participant specialty is in the value set."""
    return knowledge.valuesets.matches(value_set, visit_specialties(encounter, references))


# --------------------------------------------------------------------------
# MSC done, spine care, PT
# --------------------------------------------------------------------------


@lru_cache(maxsize=64)
def window(today: date, days: int) -> tuple[date, date]:
    """The days `within` accepts: the look-back, and tomorrow (a visit dated in the EHR's later time zone).
    Remembered: three facts ask for the same few windows on every call, the same day."""
    return today - timedelta(days=days), today + timedelta(days=1)


@reads("conditions", "encounters", "serviceRequests", "referencedPractitioners", "referencedConditions")
def msc_done(record: RecordIndex, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """A finished MSC visit (by type, service type or practitioner specialty) or a completed MSC referral,
    for LBP within the window."""
    vs, days = knowledge.valuesets, knowledge.policy.msc_lookback_days
    for _day, encounter in record.encounters_since(*window(facts.today, days)):
        if encounter.status != "finished":
            continue
        if is_visit_in(encounter, "msc-specialty", knowledge, record.references) and is_for_lbp(encounter, facts, vs):
            return True
    for request in (*record.requests_coded("msc-referral"), *record.requests_for_performer_type("msc-specialty")):
        if request.status not in DONE_STATUSES:
            continue
        when = fhir.first_date(request.occurrencePeriod, request.occurrenceDateTime, request.authoredOn)
        if within(when, facts.today, days) and is_for_lbp(request, facts, vs):
            return True
    return False


@reads("conditions", "encounters", "referencedPractitioners", "referencedConditions", fact="established_spine_care")
def spine_surgeons_seen(record: RecordIndex, facts: PatientFacts, knowledge: Knowledge) -> list[str]:
    """Finished visits with a spine surgeon (orthopedic spine or neurological surgery) for LBP in the window.

    Returns the surgeons' practitioner keys, or an empty string for a visit whose surgeon is known only
    by the visit's type: the list is non-empty exactly when the patient is under a spine surgeon's care.
    """
    vs, days = knowledge.valuesets, knowledge.policy.spine_care_lookback_days
    seen: list[str] = []
    for _day, encounter in record.encounters_since(*window(facts.today, days)):
        if encounter.status != "finished":
            continue
        specialties = visit_specialties(encounter, record.references)
        if vs.matches("ortho-nonspine-specialty", specialties) or not vs.matches(
            "spine-surgeon-specialty", specialties
        ):
            continue
        if is_for_lbp(encounter, facts, vs):
            surgeons = participants_in(encounter, "spine-surgeon-specialty", knowledge, record.references)
            seen += surgeons or [""]
    return seen


FACT_READS["spine_surgeons_seen"] = FACT_READS["established_spine_care"]


@reads("conditions", "procedures")
def after_lumbar_surgery(record: RecordIndex, knowledge: Knowledge) -> bool:
    """Lumbar spine surgery on record: a status diagnosis (postlaminectomy, fusion…), whatever its clinical
    status (a resolved 'status' is still a past surgery), or a completed lumbar spine surgery Procedure."""
    for condition, _sets in record.conditions_in("lumbar-spine-surgery-status"):
        if fhir.status_code(condition.verificationStatus) not in fhir.DISCARDED_VERIFICATION_STATUSES:
            return True
    return any(p.status == "completed" for p in record.procedures_coded("lumbar-spine-surgery"))


@reads("encounters", "serviceRequests", "procedures", "referencedPractitioners")
def recent_pt(record: RecordIndex, knowledge: Knowledge, today: date) -> bool:
    """A PT evaluation or treatment visit or procedure, a visit with a physical therapist (by service type or
    practitioner specialty), or an active or completed PT referral, within the window."""
    vs, days = knowledge.valuesets, knowledge.policy.pt_lookback_days
    for _day, encounter in record.encounters_since(*window(today, days)):
        if encounter.status not in PT_ENCOUNTER_STATUSES:
            continue
        if vs.matches("pt-evaluation", encounter.type) or vs.matches("pt-treatment", visit_kinds(encounter)):
            return True
        if is_visit_in(encounter, "pt-specialty", knowledge, record.references):
            return True
    for request in (*record.requests_coded("pt-referral"), *record.requests_for_performer_type("pt-specialty")):
        if request.status not in LIVE_REQUEST_STATUSES:
            continue
        when = fhir.first_date(request.authoredOn, request.occurrencePeriod, request.occurrenceDateTime)
        # An active PT referral with no date is still open, so it counts.
        if within(when, today, days) or (when is None and request.status == "active"):
            return True
    return any(
        p.status in DONE_PROCEDURE_STATUSES and within(procedure_date(p), today, days)
        for p in (*record.procedures_coded("pt-evaluation"), *record.procedures_coded("pt-treatment"))
    )


def visit_kinds(encounter: Encounter) -> list[CodeableConcept | None]:
    """What kind of visit an Encounter says it was: its types and its service type."""
    return [*encounter.type, encounter.serviceType]


def procedure_date(procedure: Procedure) -> date | None:
    return fhir.first_date(procedure.performedPeriod, procedure.performedDateTime)


# --------------------------------------------------------------------------
# Opioids
# --------------------------------------------------------------------------


@reads("conditions", "encounters", "serviceRequests", "procedures")
def opioid_excluded(active: Iterable[CodedCondition], record: RecordIndex, knowledge: Knowledge, today: date) -> bool:
    """CDC exclusions: active cancer, sickle cell disease, terminal illness, hospice or end-of-life care.

    Hospice or end-of-life encounters and procedures count within the look-back window.
    """
    days = knowledge.policy.exclusion_lookback_days
    if any("opioid-exclusion-conditions" in sets for _condition, sets in active):
        return True
    for encounter in record.encounters_of_type("opioid-exclusion-procedures"):
        when = fhir.period_end(encounter.period)
        if when is None or within(when, today, days):
            return True
    if any(r.status in LIVE_REQUEST_STATUSES for r in record.requests_coded("opioid-exclusion-procedures")):
        return True
    return any(
        p.status in DONE_PROCEDURE_STATUSES and within(procedure_date(p), today, days)
        for p in record.procedures_coded("opioid-exclusion-procedures")
    )


def medication_codings(request: MedicationRequest, references: References) -> list[fhir.Coding]:
    """The RxNorm (or other) codings of what a MedicationRequest prescribes, its Medication resolved."""
    return list(fhir.codings(fhir.medication_concepts(request, references)))


def is_opioid_analgesic(request: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """An opioid analgesic prescribed for pain, judged by product and reason.

    In the CDC opioid analgesic set (a product, or an ingredient where no code names a product the CDC list
    leaves out: a cough and cold combination, an injectable), and not a product used only for opioid use
    disorder (buprenorphine/naloxone, extended-release buprenorphine, methadone dispersible tablets). A
    buprenorphine or methadone product that is also a pain medicine (Butrans, Belbuca, methadone
    tablets) counts unless the order's reason or an active diagnosis is opioid use disorder.
    """
    if not isinstance(request, MedicationRequest):
        return False
    vs = knowledge.valuesets
    found = medication_codings(request, facts.references)
    if not vs.has_any("opioid-analgesics", found):
        return False
    if vs.has_any("opioid-non-analgesic-products", found) or vs.has_any("moud-only-products", found):
        return False
    if not vs.has_any("moud", found):
        return True
    oud_reason = any(vs.matches("opioid-use-disorder", c) for c in reason_concepts(request, facts.references))
    return not (oud_reason or facts.opioid_use_disorder)


@reads("conditions", "medicationRequests", "referencedMedications", "referencedConditions")
def long_term_opioid(facts: PatientFacts, knowledge: Knowledge) -> bool:
    """On long-term opioid therapy: an active opioid analgesic first prescribed longer ago than the window
    (CDC: use on most days for more than 3 months)."""
    days = knowledge.policy.long_term_opioid_days
    for request in facts.active_medication_requests:
        started = fhir.parse_date(request.authoredOn)
        if started and started <= facts.today - timedelta(days=days) and is_opioid_analgesic(request, facts, knowledge):
            return True
    return False


# What an order itself says (its reason, by code or by a referenced Condition), beside the record's facts.
FACT_READS["order_reason"] = frozenset({"conditions", "referencedConditions"})
