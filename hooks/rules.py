"""The program's rules: each draft order, selection and proposed appointment judged once per call.

A service's `judge` gives a Judgement: the cards that do not depend on Prior Notifications on file, the
referrals and visits the PN requirement is about (PnSubject), and the data without which a judged order
could not be classified. `settle` then adds what the PN records say (the booking cards, the CRD coverage
information) without judging anything again. Pure functions, no HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from hooks import fhir
from hooks.appointments import (
    actors,
    being_booked,
    is_initial_spine_visit_for_lbp,
    names_its_specialty,
    npis,
    providers,
    referrals,
    visit_npis,
)
from hooks.coverage import CoverageAssertion, PnState, pn_state
from hooks.decisions import (
    AT_BOOKING,
    AT_BOOKING_UNCHECKED,
    LONG_TERM_OPIOID,
    MSC_EVALUATION_FIRST,
    OPIOID_SPARING_ALTERNATIVES,
    PHYSICAL_THERAPY_FIRST_LINE,
    PRIOR_NOTIFICATION_REQUIRED,
    RED_FLAG_REVIEW,
    SUSPENDED,
    Decision,
)
from hooks.facts import (
    PatientFacts,
    is_for_lbp,
    is_opioid_analgesic,
    is_red_flag_finding,
    is_red_flag_reason,
    reason_concepts,
)
from hooks.fhir import References
from hooks.knowledge import Knowledge
from hooks.model import Appointment, MedicationRequest, PractitionerRole, Reference, Resource, ServiceRequest
from hooks.orders import (
    being_placed,
    classified_by_its_code,
    has_emergent_priority,
    has_red_flag_reason,
    is_spine_surgical_referral,
)
from hooks.record import REFERENCED_DATA

MSC_SUSPENDED = "suspended"  # the exemption (and basis) while the plan has suspended the MSC step


class PnSubject(msgspec.Struct, frozen=True):
    """A referral (order-sign) or a proposed visit (appointment-book) the Prior Notification rule is about."""

    about: ServiceRequest | Appointment  # the referral, or the appointment
    target: Resource  # where CRD coverage information is written
    msc_expected: bool  # no MSC evaluation on record and no exemption: the MSC card (and detail) applies
    at_booking: bool = False  # appointment-book: its cards depend on whether a PN is on file
    form_needs: str | None = None  # what the PN form asks about the MSC step


class Judgement(msgspec.Struct, frozen=True):
    """What one call's targets came to, each judged once."""

    decisions: tuple[Decision, ...] = ()  # cards that do not depend on the PN records
    pn_subjects: tuple[PnSubject, ...] = ()
    unjudged: frozenset[str] = frozenset()  # data without which a target could not be classified
    # 'Type/id' of the targets' own references that only `unjudged` weighs (performers, Medications,
    # participants): that one could not be had matters only when the target's classification hinges on it.
    own_references: frozenset[str] = frozenset()


class Settled(msgspec.Struct, frozen=True):
    """The call's answer as decided: cards, and the CRD coverage information."""

    decisions: tuple[Decision, ...]
    assertions: tuple[CoverageAssertion, ...]


def in_scope(facts: PatientFacts) -> bool:
    """Living adults without an emergent or urgent presentation; everyone else gets silence."""
    return facts.is_adult and not facts.deceased and not facts.red_flags


# --------------------------------------------------------------------------
# Orders (order-select, order-sign)
# --------------------------------------------------------------------------


def judge_orders(orders: Sequence[Resource], facts: PatientFacts, knowledge: Knowledge) -> Judgement:
    """Spine-surgical referrals and opioid analgesics among these orders.

    Red-flag findings (urinary retention, saddle anesthesia, foot drop…) beside a spine referral for
    LBP: only the red-flag review card; the MSC step waits until an emergency is ruled out, and no
    referral is then said to need Prior Notification.
    """
    orders = being_placed(orders)
    unjudged = unjudged_order_data(orders, facts.references, knowledge)
    own = own_references(orders)
    if not in_scope(facts):
        return Judgement(unjudged=unjudged, own_references=own)
    referrals_ = spine_referrals(orders, facts, knowledge)
    review = red_flag_review(referrals_, facts, knowledge)
    judged = [] if review else judged_referrals(referrals_, facts, knowledge)
    spine = review or merged([d for _referral, decisions in judged for d in decisions])
    return Judgement(
        decisions=tuple(spine + opioid_decisions(orders, facts, knowledge)),
        pn_subjects=tuple(referral_subject(r, decisions) for r, decisions in judged),
        unjudged=unjudged,
        own_references=own,
    )


def spine_referrals(orders: Iterable[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[ServiceRequest]:
    """The spine-surgical referrals among these orders, save those ordered stat or asap (silence)."""
    return [
        o
        for o in orders
        if isinstance(o, ServiceRequest)
        and is_spine_surgical_referral(o, knowledge, facts.references)
        and not has_emergent_priority(o, knowledge)
    ]


def red_flag_review(referrals_: list[ServiceRequest], facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    """One 'rule out cauda equina / progressive deficit now' card when a spine referral for a patient
    with LBP comes with a recent red-flag finding (on the problem list or as the referral's reason)."""
    vs = knowledge.valuesets
    flagged: list[Resource] = []
    for referral in referrals_:
        reasons = reason_concepts(referral, facts.references)
        if any(is_red_flag_reason(c, knowledge) for c in reasons):
            continue  # referred for the emergency itself: silence, as for any emergent order
        finding = any(is_red_flag_finding(c, knowledge) for c in reasons) or bool(facts.red_flag_findings)
        if finding and (facts.has_active_lbp or is_for_lbp(referral, facts, vs)):
            flagged.append(referral)
    return [Decision(RED_FLAG_REVIEW, orders=tuple(flagged))] if flagged else []


def judged_referrals(
    referrals_: Iterable[ServiceRequest], facts: PatientFacts, knowledge: Knowledge
) -> list[tuple[ServiceRequest, list[Decision]]]:
    """Each of these spine referrals that gets a card, with its decisions: for LBP, not for a red-flag
    reason (spine_referrals has already left out stat and asap ones), not a follow-up with a surgeon seen."""
    found = []
    for referral in referrals_:
        if has_red_flag_reason(referral, facts, knowledge) or not is_for_lbp(referral, facts, knowledge.valuesets):
            continue
        decisions = referral_decision(referral, facts, knowledge)
        if decisions:
            found.append((referral, decisions))
    return found


def referral_decision(referral: ServiceRequest, facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    about = Decision(
        MSC_EVALUATION_FIRST,
        orders=(referral,),
        reason_codes=tuple(c for c in map(fhir.carried_concept, referral.reasonCode) if c),
        reason_references=tuple(
            r.reference
            for r in fhir.with_reference(referral.reasonReference)
            if r.reference is not None and "/" in r.reference
        ),
    )
    if not facts.is_initial_spine_visit:
        if to_a_surgeon_already_seen(referral, facts):
            return []  # a follow-up visit with the same surgeon: neither the MSC step nor Prior Notification
        basis = "established-spine-care" if facts.established_spine_care else "after-lumbar-surgery"
        return [msgspec.structs.replace(about, topic=PRIOR_NOTIFICATION_REQUIRED, basis=basis)]
    exemption = msc_exemption(facts, knowledge)
    if exemption is None:
        return [about]
    if exemption != MSC_SUSPENDED:
        return [msgspec.structs.replace(about, topic=PRIOR_NOTIFICATION_REQUIRED, basis=exemption)]
    # Suspended: the MSC card still says what the program expects, beside the PN card that lets it proceed.
    suspension = knowledge.policy.suspension_on(facts.today)
    return [
        msgspec.structs.replace(about, suspension=suspension, variant=SUSPENDED),
        msgspec.structs.replace(about, topic=PRIOR_NOTIFICATION_REQUIRED, suspension=suspension, basis=exemption),
    ]


def referral_subject(referral: ServiceRequest, decisions: list[Decision]) -> PnSubject:
    """The PN requirement written on a spine-surgical referral for LBP (order-sign's coverage information).

    The PN is filed later by the surgical practice; one already on file for this patient (and, when the
    referral names its performer's NPI, for that practice) is said to satisfy it. The MSC detail appears
    exactly when the referral's own card is the MSC card (not while the step is suspended)."""
    return PnSubject(
        about=referral,
        target=referral,
        msc_expected=any(d.topic == MSC_EVALUATION_FIRST and d.suspension is None for d in decisions),
    )


def msc_exemption_on_record(facts: PatientFacts) -> str | None:
    """Why the patient's own data spares the MSC step (a cards.yaml `bases` key), or None."""
    if facts.msc_done:
        return "msc-done"
    if facts.medicare_advantage:
        return "medicare-advantage"
    if facts.msc_access is False:
        return "no-msc-access"
    return None


def msc_exemption(facts: PatientFacts, knowledge: Knowledge) -> str | None:
    """Why the MSC step is not asked of an initial spine visit (a cards.yaml `bases` key), or None when it is.

    The record's reasons come first: they hold whether or not the plan has suspended the step.
    """
    if (basis := msc_exemption_on_record(facts)) is not None:
        return basis
    return MSC_SUSPENDED if knowledge.policy.suspension_on(facts.today) is not None else None


def to_a_surgeon_already_seen(referral: ServiceRequest, facts: PatientFacts) -> bool:
    """The referral names as performer a spine surgeon the patient saw for LBP in the window."""
    performers: set[str | None] = set()
    for ref in fhir.with_reference(referral.performer):
        performers.add(fhir.reference_key(ref))
        role = facts.references.resolve(ref, referral)
        if isinstance(role, PractitionerRole):
            performers.add(fhir.reference_key(role.practitioner))
    return bool({p for p in performers if p} & facts.spine_surgeons_seen)


def merged(decisions: list[Decision]) -> list[Decision]:
    """One decision per topic, basis and variant, about all the orders it concerns (in order)."""
    groups: dict[tuple[str, str | None, str | None], Decision] = {}
    for decision in decisions:
        key = (decision.topic, decision.basis, decision.variant)
        known = groups.get(key)
        if known is None:
            groups[key] = decision
            continue
        groups[key] = msgspec.structs.replace(
            known,
            orders=known.orders + decision.orders,
            reason_codes=known.reason_codes + tuple(c for c in decision.reason_codes if c not in known.reason_codes),
            reason_references=tuple(dict.fromkeys(known.reason_references + decision.reason_references)),
        )
    return list(groups.values())


def opioid_decisions(orders: Iterable[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    """One opioid-sparing card when any opioid analgesic here is for an adult's LBP."""
    if facts.opioid_excluded:
        return []
    for order in orders:
        if is_opioid_analgesic(order, facts, knowledge) and is_for_lbp(order, facts, knowledge.valuesets):
            variant = LONG_TERM_OPIOID if facts.long_term_opioid else None
            return [Decision(OPIOID_SPARING_ALTERNATIVES, variant=variant, reason_references=facts.lbp_condition_keys)]
    return []


def order_references(order: Resource) -> list[Reference]:
    """What an order names by reference as its performer, its Medication, or whom a visit is with."""
    if isinstance(order, MedicationRequest):
        return fhir.with_reference((order.medicationReference,))
    if isinstance(order, ServiceRequest):
        return fhir.with_reference(order.performer)
    if isinstance(order, Appointment):
        return actors(order)
    return []


def own_references(orders: Iterable[Resource]) -> frozenset[str]:
    """'Type/id' of what these orders name as performer, Medication or participant."""
    return frozenset(key for order in orders for ref in order_references(order) if (key := fhir.reference_key(ref)))


def hinges_on_its_references(order: Resource, knowledge: Knowledge) -> bool:
    """Whether what the order names by reference decides how it is judged: always a prescription's Medication;
    a referral's performer when the referral's own code does not say what kind of care it asks for; whom a
    visit is with when it names no specialty."""
    if isinstance(order, ServiceRequest):
        return not classified_by_its_code(order, knowledge)
    if isinstance(order, Appointment):
        return not names_its_specialty(order)
    return isinstance(order, MedicationRequest)


def unjudged_order_data(orders: Iterable[Resource], references: References, knowledge: Knowledge) -> frozenset[str]:
    """Referenced data that could not be had without which an order cannot be judged (the references its
    judgement hinges on)."""
    return frozenset(
        REFERENCED_DATA[kind]
        for order in orders
        if hinges_on_its_references(order, knowledge)
        for ref in order_references(order)
        if references.is_unknown(ref) and (kind := fhir.reference_type(ref)) in REFERENCED_DATA
    )


# --------------------------------------------------------------------------
# patient-view
# --------------------------------------------------------------------------


def judge_chart(facts: PatientFacts, knowledge: Knowledge) -> Judgement:
    """First-line PT and opioid-sparing care; a recent red-flag finding asks to rule out an emergency
    first, in place of first-line PT advice."""
    if not in_scope(facts):
        return Judgement()
    first = chart_review(facts) or physical_therapy_decisions(facts)
    return Judgement(decisions=tuple(first + opioid_decisions(facts.active_medication_requests, facts, knowledge)))


def physical_therapy_decisions(facts: PatientFacts) -> list[Decision]:
    """PT first-line for active LBP without physical therapy in the look-back window."""
    if facts.has_active_lbp and not facts.recent_pt:
        return [Decision(PHYSICAL_THERAPY_FIRST_LINE, reason_references=facts.lbp_condition_keys)]
    return []


def chart_review(facts: PatientFacts) -> list[Decision]:
    """patient-view: recent red-flag findings beside active LBP come before first-line advice."""
    if facts.has_active_lbp and facts.red_flag_findings:
        return [Decision(RED_FLAG_REVIEW)]
    return []


# --------------------------------------------------------------------------
# appointment-book
# --------------------------------------------------------------------------


def judge_bookings(appointments: Sequence[Appointment], facts: PatientFacts, knowledge: Knowledge) -> Judgement:
    """The proposed initial spine-surgeon visits for LBP: each a PN subject (its cards come with the PN
    records, in `settle`)."""
    unjudged = unjudged_order_data(appointments, facts.references, knowledge)
    own = own_references(appointments)
    if not in_scope(facts):
        return Judgement(unjudged=unjudged, own_references=own)
    msc_expected = msc_exemption(facts, knowledge) is None
    subjects = []
    for appointment in being_booked(appointments):
        if not is_initial_spine_visit_for_lbp(appointment, facts, knowledge):
            continue
        based_on = referrals(appointment, facts.references)
        subjects.append(
            PnSubject(
                about=appointment,
                target=based_on[0] if based_on else appointment,  # CRD: on the order the visit is based on
                msc_expected=msc_expected,
                at_booking=True,
                form_needs="msc-done" if facts.msc_done else "no-msc",
            )
        )
    return Judgement(pn_subjects=tuple(subjects), unjudged=unjudged, own_references=own)


# --------------------------------------------------------------------------
# With the Prior Notifications on file
# --------------------------------------------------------------------------


def settle(judgement: Judgement, facts: PatientFacts, knowledge: Knowledge) -> Settled:
    """The judgement with the PN records (facts.prior_notifications) read: a booking's PN card unless one
    is on file and its MSC card when expected; each subject's coverage information (none without a
    primary Coverage to write it against: CRD requires one)."""
    decisions = list(judgement.decisions)
    assertions = []
    for subject in judgement.pn_subjects:
        state, on_file = pn_state(
            facts.prior_notifications,
            appointment_id=subject.about.id if isinstance(subject.about, Appointment) else None,
            npis=subject_npis(subject.about, facts.references),
            today=facts.today,
            window_days=knowledge.policy.prior_notification_window_days,
        )
        if subject.at_booking and isinstance(subject.about, Appointment):
            decisions += booking_decisions(subject, subject.about, state)
        if facts.primary_coverage_key is not None:
            assertions.append(
                CoverageAssertion(subject.target, facts.primary_coverage_key, state, on_file, subject.msc_expected)
            )
    return Settled(tuple(decisions), tuple(assertions))


def subject_npis(about: ServiceRequest | Appointment, references: References) -> frozenset[str]:
    """The NPIs of the practice and clinicians a referral is to or a visit is with: a PN on file must name one
    of them (looked up only when the PN records are read)."""
    if isinstance(about, Appointment):
        return visit_npis(about, references)
    return npis(providers(fhir.with_reference(about.performer), about, references), about.performer)


def booking_decisions(subject: PnSubject, appointment: Appointment, state: PnState) -> list[Decision]:
    decisions = []
    if state is not PnState.ON_FILE:
        variant = AT_BOOKING if state is PnState.REQUIRED else AT_BOOKING_UNCHECKED
        needs = subject.form_needs
        decisions.append(
            Decision(PRIOR_NOTIFICATION_REQUIRED, appointment=appointment, variant=variant, form_needs=needs)
        )
    if subject.msc_expected:
        decisions.append(Decision(MSC_EVALUATION_FIRST, appointment=appointment, variant=AT_BOOKING))
    return decisions
