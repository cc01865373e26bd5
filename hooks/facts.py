"""PatientFacts: what the rules need to know, derived once from the patient's FHIR data.

The rules never read raw FHIR; everything they ask is answered here, with the
value sets and policy windows from guideline_data. References (a reason Condition, a
visit's practitioner, a prescription's Medication) are resolved one way, by
`PatientRecord.references`: contained in the referring resource, else gathered by the
pipeline (prefetched, or fetched from the EHR's FHIR server). Nothing here fetches.

Facts other services reuse (the appointment-book hook among them) are fields of
PatientFacts or small functions with docstrings: `is_initial_spine_visit`,
`visit_specialties`, `practitioner_specialties`, `has_msc_access`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import Enum
from typing import Any

from hooks import fhir
from hooks.decisions import REFERENCED_DATA
from hooks.fhir import References, Resource
from hooks.knowledge import Knowledge
from hooks.notifications import PriorNotificationOnFile
from hooks.terminology import ICD10CM, ValueSets, normalize

RED_FLAG_SETS = ("red-flags-emergent", "red-flags-emergent-non-spine", "red-flags-urgent")
RED_FLAG_REVIEW_SET = "red-flags-review"
LIVE_COVERAGE_STATUSES = frozenset({"active"})
DONE_STATUSES = frozenset({"completed"})
LIVE_REQUEST_STATUSES = frozenset({"active", "completed", "on-hold"})
PT_ENCOUNTER_STATUSES = frozenset({"finished", "in-progress", "arrived", "triaged", "onleave"})
DONE_PROCEDURE_STATUSES = frozenset({"completed", "in-progress"})
LIVE_MEDICATION_STATUSES = frozenset({"active"})
# The resource types whose references the rules follow: those hooks.decisions names missing-data keys for.
REFERENCED_TYPES = tuple(REFERENCED_DATA)


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
    references: References = field(default_factory=References)

    @classmethod
    def from_resources(cls, resources: Iterable[Resource], unresolved: Iterable[str] = ()) -> PatientRecord:
        """Sort resources by type; a search Bundle may carry OperationOutcomes or includes.

        Every resource is also indexed by 'Type/id' for reference resolution; `unresolved` are
        the references that were wanted but could not be had.
        """
        resources = list(resources)
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
            references=References.of(resources, unresolved),
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
    lbp_conditions: tuple[str, ...] = ()  # 'Condition/id' of active LBP diagnoses
    references: References = field(default_factory=References)
    active_medication_requests: tuple[Resource, ...] = ()
    primary_coverage_key: str | None = None  # 'Coverage/id' of the primary coverage in force, when it can be told
    # A fact the pipeline adds (not from FHIR): the patient's Prior Notifications on file (None: they
    # could not be read).
    prior_notifications: tuple[PriorNotificationOnFile, ...] | None = ()

    @property
    def is_initial_spine_visit(self) -> bool:
        """A visit to a spine surgeon now would be the patient's initial one for LBP (what the program gates)."""
        return not (self.established_spine_care or self.after_lumbar_surgery)


def build_facts(record: PatientRecord, knowledge: Knowledge, today: date) -> PatientFacts:
    vs, policy = knowledge.valuesets, knowledge.policy
    # Each active condition with the value sets its code is in, looked up once for every rule.
    active = [(c, vs.sets_of(c.get("code"))) for c in record.conditions if fhir.is_active_condition(c)]
    lbp_conditions = [c for c, sets in active if "lbp-trigger" in sets]
    code = postal_code(record.patient)
    primary = primary_coverage(record.coverages, knowledge, today)
    facts = PatientFacts(
        today=today,
        is_adult=is_adult(record.patient, policy.adult_age, today),
        postal_code=code,
        has_active_lbp=bool(lbp_conditions),
        red_flags=red_flags(active, knowledge, today),
        red_flag_findings=red_flag_findings(active, knowledge, today),
        medicare_advantage=primary_is_medicare_advantage(primary, record.coverages, knowledge, today),
        msc_done=False,
        recent_pt=recent_pt(record, knowledge, today),
        opioid_excluded=opioid_excluded(active, record, knowledge, today),
        after_lumbar_surgery=after_lumbar_surgery(record, knowledge),
        msc_access=has_msc_access(code, knowledge),
        opioid_use_disorder=any("opioid-use-disorder" in sets for _c, sets in active),
        lbp_conditions=tuple(k for c in lbp_conditions if (k := fhir.resource_key(c))),
        references=record.references,
        active_medication_requests=tuple(
            m for m in record.medication_requests if m.get("status") in LIVE_MEDICATION_STATUSES
        ),
        primary_coverage_key=fhir.resource_key(primary or {}),
    )
    # Whether a visit was "for LBP", and whether an active drug is an opioid analgesic, need the facts above.
    surgeons = spine_surgeons_seen(record, facts, knowledge)
    return replace(
        facts,
        msc_done=msc_done(record, facts, knowledge),
        established_spine_care=bool(surgeons),
        spine_surgeons_seen=frozenset(k for k in surgeons if k),
        long_term_opioid=long_term_opioid(facts, knowledge),
    )


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


def encounter_character(concept: Any) -> str | None:
    """The 7th character of the concept's ICD-10-CM code (initial, subsequent encounter or sequela), if any.

    Only 7-character codes ending in a letter carry one (S32.010A, M80.08XD, M48.56XS).
    """
    for system, code in fhir.codings(concept):
        system, code = normalize(system, code)
        bare = code.replace(".", "")
        if system == ICD10CM and len(bare) == 7 and bare[-1].isalpha():
            return bare[-1].upper()
    return None


def counts_as_red_flag(condition: Resource, tier: str, knowledge: Knowledge, today: date) -> bool:
    """An active red-flag condition that is a present problem, not history.

    A subsequent-encounter or sequela code (7th character D, G, K, P, S…) is follow-up of a
    problem already treated; an initial-encounter code counts when noted within the tier's window
    (the same condition coded again as a new problem is a new Condition, noted recently); a code
    without an encounter character counts while active.
    """
    policy = knowledge.policy
    character = encounter_character(condition.get("code"))
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
            found.append(fhir.concept_text(condition.get("code")) or "red flag")
    return tuple(found)


def red_flag_findings(active: Iterable[CodedCondition], knowledge: Knowledge, today: date) -> tuple[str, ...]:
    """Texts of review-tier findings (urinary retention, saddle anesthesia, foot drop…) noted recently."""
    days = knowledge.policy.red_flag_review_days
    found: list[str] = []
    for condition, sets in active:
        if RED_FLAG_REVIEW_SET in sets and sets.isdisjoint(RED_FLAG_SETS):
            noted = fhir.condition_date(condition)
            if noted is None or within(noted, today, days):
                found.append(fhir.concept_text(condition.get("code")) or "red flag finding")
    return tuple(found)


def is_red_flag_reason(concept: Any, knowledge: Knowledge) -> bool:
    """An order reason that is an emergent or urgent red flag (not one coded as follow-up or sequela)."""
    sets = knowledge.valuesets.sets_of(concept)
    if all(tier not in sets for tier in RED_FLAG_SETS):
        return False
    return encounter_character(concept) not in knowledge.policy.later_encounter_characters


def is_red_flag_finding(concept: Any, knowledge: Knowledge) -> bool:
    return RED_FLAG_REVIEW_SET in knowledge.valuesets.sets_of(concept)


# --------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------


def in_force(coverage: Resource, today: date) -> bool:
    """Active and within its period today."""
    if coverage.get("status") not in LIVE_COVERAGE_STATUSES:
        return False
    period = coverage.get("period") or {}
    start, end = fhir.parse_date(period.get("start")), fhir.parse_date(period.get("end"), latest=True)
    return not ((start and start > today) or (end and end < today))


def is_medicare_advantage(coverage: Resource, knowledge: Knowledge, today: date) -> bool:
    """A Coverage in force whose payer type is Medicare Advantage, or a configured MA plan."""
    if not in_force(coverage, today):
        return False
    if knowledge.valuesets.matches("medicare-advantage-payer", coverage.get("type")):
        return True
    return bool(plan_identifiers(coverage) & knowledge.policy.medicare_advantage_plan_ids)


def primary_coverage(coverages: Iterable[Resource], knowledge: Knowledge, today: date) -> Resource | None:
    """The coverage that pays first: the one in force, or among several the lowest Coverage.order, else the
    plan's own coverage (its payor identifier configured in policy.yaml). None when it cannot be told.
    """
    live = [c for c in coverages if in_force(c, today)]
    if len(live) <= 1:
        return live[0] if live else None
    ordered = sorted((c["order"], index) for index, c in enumerate(live) if isinstance(c.get("order"), int))
    if ordered and (len(ordered) == 1 or ordered[0][0] < ordered[1][0]):
        return live[ordered[0][1]]
    own = [c for c in live if payor_identifiers(c) & knowledge.policy.plan_payer_ids]
    return own[0] if len(own) == 1 else None


def primary_is_medicare_advantage(
    primary: Resource | None, coverages: Iterable[Resource], knowledge: Knowledge, today: date
) -> bool:
    """Exempt from the MSC step: the primary coverage (primary_coverage's answer) is Medicare Advantage.

    When the primary coverage cannot be told (several in force, no order, none the plan's own), only
    coverages that are all Medicare Advantage exempt: an MA coverage that may be secondary does not.
    """
    if primary is not None:
        return is_medicare_advantage(primary, knowledge, today)
    live = [c for c in coverages if in_force(c, today)]
    return bool(live) and all(is_medicare_advantage(c, knowledge, today) for c in live)


def payor_identifiers(coverage: Resource) -> set[str]:
    found = {(p.get("identifier") or {}).get("value") for p in coverage.get("payor") or [] if isinstance(p, dict)}
    return {v for v in found if isinstance(v, str)}


def plan_identifiers(coverage: Resource) -> set[str]:
    """Plan and payer identifiers: Coverage.class values and payor identifiers."""
    values = {c.get("value") for c in coverage.get("class") or [] if isinstance(c, dict)}
    return {v for v in values if isinstance(v, str)} | payor_identifiers(coverage)


# --------------------------------------------------------------------------
# Reasons
# --------------------------------------------------------------------------


def reason_references(resource: Resource) -> list[dict[str, Any]]:
    """The Condition references that give an order's or visit's reason (incl. Encounter.diagnosis)."""
    found = fhir.references_in(resource.get("reasonReference"))
    for diagnosis in resource.get("diagnosis") or []:
        if isinstance(diagnosis, dict):
            found += fhir.references_in(diagnosis.get("condition"))
    return found


def reason_concepts(resource: Resource, facts: PatientFacts) -> list[Any]:
    """The reason CodeableConcepts of an order or visit, referenced Conditions resolved (contained ones too)."""
    concepts = list(resource.get("reasonCode") or [])
    for ref in reason_references(resource):
        condition = facts.references.resolve(ref, resource)
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


# --------------------------------------------------------------------------
# Who a visit or order was with
# --------------------------------------------------------------------------


def practitioner_specialties(reference: Any, container: Resource, references: References) -> list[Any]:
    """The specialty concepts of the practitioner a Reference names.

    A PractitionerRole: its specialty. A Practitioner: the specialty of each of its PractitionerRoles
    and its qualification codes (US Core allows NUCC taxonomy there). Anything else: none.
    """
    resource = references.resolve(reference, container)
    if resource is None:
        return []
    if resource.get("resourceType") == "PractitionerRole":
        return list(resource.get("specialty") or [])
    if resource.get("resourceType") != "Practitioner":
        return []
    found = [q.get("code") for q in resource.get("qualification") or [] if isinstance(q, dict)]
    for role in references.roles_of(resource):
        found += list(role.get("specialty") or [])
    return [c for c in found if c]


def participants(encounter: Resource) -> list[dict[str, Any]]:
    """References to the people who took part in a visit (Encounter.participant.individual)."""
    found: list[dict[str, Any]] = []
    for participant in encounter.get("participant") or []:
        if isinstance(participant, dict):
            found += fhir.references_in(participant.get("individual"))
    return found


def appointment_participants(appointment: Resource) -> list[dict[str, Any]]:
    """References to whom a proposed visit is with (Appointment.participant.actor; none for an order)."""
    found: list[dict[str, Any]] = []
    for participant in appointment.get("participant") or []:
        if isinstance(participant, dict):
            found += fhir.references_in(participant.get("actor"))
    return found


def visit_specialties(encounter: Resource, references: References) -> list[Any]:
    """What a visit says about its specialty: serviceType, type, and each participant's specialty."""
    concepts: list[Any] = [encounter.get("serviceType"), *(encounter.get("type") or [])]
    for individual in participants(encounter):
        concepts += practitioner_specialties(individual, encounter, references)
    return [c for c in concepts if c]


def participants_in(encounter: Resource, value_set: str, knowledge: Knowledge, references: References) -> list[str]:
    """Keys ('Practitioner/x', 'PractitionerRole/y') of the visit's participants whose specialty is in the set."""
    vs = knowledge.valuesets
    found = []
    for individual in participants(encounter):
        specialties = practitioner_specialties(individual, encounter, references)
        if vs.matches(value_set, specialties):
            found.append(fhir.reference_key(individual) or "")
            resolved = references.resolve(individual, encounter) or {}
            found.append(fhir.reference_key(resolved.get("practitioner")) or "")
    return [key for key in found if key]


def is_visit_in(encounter: Resource, value_set: str, knowledge: Knowledge, references: References) -> bool:
    """A visit whose serviceType, type or participant specialty is in the value set."""
    return knowledge.valuesets.matches(value_set, visit_specialties(encounter, references))


# --------------------------------------------------------------------------
# MSC done, spine care, PT
# --------------------------------------------------------------------------


def msc_done(record: PatientRecord, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """A finished MSC visit (by type, service type or practitioner specialty) or a completed MSC referral,
    for LBP within the window."""
    vs, days = knowledge.valuesets, knowledge.policy.msc_lookback_days
    for encounter in record.encounters:
        if encounter.get("status") != "finished":
            continue
        if (
            within(fhir.period_date(encounter, "period"), facts.today, days)
            and is_visit_in(encounter, "msc-specialty", knowledge, record.references)
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


def spine_surgeons_seen(record: PatientRecord, facts: PatientFacts, knowledge: Knowledge) -> list[str]:
    """Finished visits with a spine surgeon (orthopedic spine or neurological surgery) for LBP in the window.

    Returns the surgeons' practitioner keys, or an empty string for a visit whose surgeon is known only
    by the visit's type: the list is non-empty exactly when the patient is under a spine surgeon's care.
    """
    vs, days = knowledge.valuesets, knowledge.policy.spine_care_lookback_days
    seen: list[str] = []
    for encounter in record.encounters:
        if encounter.get("status") != "finished" or not within(
            fhir.period_date(encounter, "period"), facts.today, days
        ):
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


def after_lumbar_surgery(record: PatientRecord, knowledge: Knowledge) -> bool:
    """Lumbar spine surgery on record: a status diagnosis (postlaminectomy, fusion…), whatever its clinical
    status (a resolved 'status' is still a past surgery), or a completed lumbar spine surgery Procedure."""
    vs = knowledge.valuesets
    for condition in record.conditions:
        discarded = fhir.status_code(condition.get("verificationStatus")) in fhir.DISCARDED_VERIFICATION_STATUSES
        if not discarded and vs.matches("lumbar-spine-surgery-status", condition.get("code")):
            return True
    return any(
        p.get("status") == "completed" and vs.matches("lumbar-spine-surgery", p.get("code")) for p in record.procedures
    )


def recent_pt(record: PatientRecord, knowledge: Knowledge, today: date) -> bool:
    """A PT evaluation visit or procedure, a visit with a physical therapist (by service type or practitioner
    specialty), or an active or completed PT referral, within the window."""
    vs, days = knowledge.valuesets, knowledge.policy.pt_lookback_days
    for encounter in record.encounters:
        if encounter.get("status") not in PT_ENCOUNTER_STATUSES:
            continue
        if not within(fhir.period_date(encounter, "period"), today, days):
            continue  # the cheap date check first: a visit's specialties resolve its participants
        if vs.matches("pt-evaluation", encounter.get("type")) or is_visit_in(
            encounter, "pt-specialty", knowledge, record.references
        ):
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


# --------------------------------------------------------------------------
# Opioids
# --------------------------------------------------------------------------


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


def medication_codings(request: Resource, references: References) -> list[fhir.Coding]:
    """The RxNorm (or other) codings of what a MedicationRequest prescribes, its Medication resolved."""
    return fhir.all_codings(fhir.medication_concepts(request, references))


def is_opioid_analgesic(request: Resource, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """An opioid analgesic prescribed for pain, judged by product and reason.

    In the CDC opioid analgesic set, and not a product used only for opioid use disorder
    (buprenorphine/naloxone, extended-release buprenorphine, methadone dispersible tablets). A
    buprenorphine or methadone product that is also a pain medicine (Butrans, Belbuca, methadone
    tablets) counts unless the order's reason or an active diagnosis is opioid use disorder.
    """
    if request.get("resourceType") != "MedicationRequest":
        return False
    vs = knowledge.valuesets
    found = medication_codings(request, facts.references)
    if not vs.has_any("opioid-analgesics", found) or vs.has_any("moud-only-products", found):
        return False
    if not vs.has_any("moud", found):
        return True
    oud_reason = any(vs.matches("opioid-use-disorder", c) for c in reason_concepts(request, facts))
    return not (oud_reason or facts.opioid_use_disorder)


def long_term_opioid(facts: PatientFacts, knowledge: Knowledge) -> bool:
    """On long-term opioid therapy: an active opioid analgesic first prescribed longer ago than the window
    (CDC: use on most days for more than 3 months)."""
    days = knowledge.policy.long_term_opioid_days
    for request in facts.active_medication_requests:
        started = fhir.parse_date(request.get("authoredOn"))
        if started and started <= facts.today - timedelta(days=days) and is_opioid_analgesic(request, facts, knowledge):
            return True
    return False


# --------------------------------------------------------------------------
# Referenced resources the rules read
# --------------------------------------------------------------------------


def references_needed(record: PatientRecord, orders: Iterable[Resource], knowledge: Knowledge, today: date) -> set[str]:
    """'Type/id' of the resources the rules would follow a reference to that the record does not hold.

    The pipeline fetches these (within what is left of the call's FHIR budget); contained references
    never need fetching. Only references that can change a card are listed: the orders' reasons,
    performers and medications; visits in the look-back windows (reason, diagnosis, participants);
    past referrals' reasons; active prescriptions' medications and reasons.
    """
    policy = knowledge.policy
    window = max(policy.msc_lookback_days, policy.spine_care_lookback_days, policy.pt_lookback_days)
    wanted: list[dict[str, Any]] = []
    for order in orders:
        wanted += reason_references(order) + fhir.references_in(order.get("performer"))
        wanted += fhir.references_in(order.get("medicationReference"))
        if not (order.get("serviceType") or order.get("specialty")):
            wanted += appointment_participants(order)  # a visit that names no specialty: whom it is with decides
    for encounter in record.encounters:
        if within(fhir.period_date(encounter, "period"), today, window):
            wanted += reason_references(encounter) + participants(encounter)
    for request in record.service_requests:
        wanted += reason_references(request)
    for request in record.medication_requests:
        if request.get("status") in LIVE_MEDICATION_STATUSES:
            wanted += reason_references(request) + fhir.references_in(request.get("medicationReference"))
    keys = {fhir.reference_key(ref) for ref in wanted if not ref["reference"].startswith("#")}
    return {
        key for key in keys if key and key.split("/")[0] in REFERENCED_TYPES and key not in record.references.by_key
    }
