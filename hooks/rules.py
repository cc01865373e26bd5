"""The program's rules over orders and PatientFacts. Pure functions, no HTTP."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from hooks import fhir
from hooks.decisions import (
    LONG_TERM_OPIOID,
    MSC_EVALUATION_FIRST,
    OPIOID_SPARING_ALTERNATIVES,
    PHYSICAL_THERAPY_FIRST_LINE,
    PRIOR_NOTIFICATION_REQUIRED,
    RED_FLAG_REVIEW,
    REFERENCED_DATA,
    SUSPENDED,
    Decision,
)
from hooks.facts import (
    PatientFacts,
    appointment_participants,
    is_for_lbp,
    is_opioid_analgesic,
    is_red_flag_finding,
    is_red_flag_reason,
    reason_concepts,
)
from hooks.fhir import Resource
from hooks.knowledge import Knowledge
from hooks.orders import (
    has_emergent_priority,
    has_red_flag_reason,
    is_spine_surgical_referral,
    might_concern_program,
)

MSC_SUSPENDED = "suspended"  # the exemption (and basis) while the plan has suspended the MSC step


def in_scope(facts: PatientFacts) -> bool:
    """Adults without an emergent or urgent presentation; everyone else gets silence."""
    return facts.is_adult and not facts.red_flags


def order_decisions(orders: list[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    """The order hooks' cards: spine-surgical referrals and opioid analgesics among these orders.

    Red-flag findings (urinary retention, saddle anesthesia, foot drop…) beside a spine referral for
    LBP: only the red-flag review card; the MSC step waits until an emergency is ruled out.
    """
    if not in_scope(facts):
        return []
    referrals = spine_referrals(orders, facts, knowledge)
    spine = red_flag_review(referrals, facts, knowledge) or referral_decisions(referrals, facts, knowledge)
    return spine + opioid_decisions(orders, facts, knowledge)


def spine_referrals(orders: Iterable[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[Resource]:
    """The spine-surgical referrals among these orders, save those ordered stat or asap (silence)."""
    return [
        o
        for o in orders
        if is_spine_surgical_referral(o, knowledge, facts.references) and not has_emergent_priority(o, knowledge)
    ]


def concerns_program(orders: Iterable[Resource], knowledge: Knowledge) -> bool:
    """Any order that is, or could be once its references are resolved, a spine referral or an opioid."""
    return might_concern_program(orders, knowledge)


def red_flag_review(referrals: list[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    """One 'rule out cauda equina / progressive deficit now' card when a spine referral for a patient
    with LBP comes with a recent red-flag finding (on the problem list or as the referral's reason)."""
    vs = knowledge.valuesets
    flagged = []
    for referral in referrals:
        reasons = reason_concepts(referral, facts)
        if any(is_red_flag_reason(c, knowledge) for c in reasons):
            continue  # referred for the emergency itself: silence, as for any emergent order
        finding = any(is_red_flag_finding(c, knowledge) for c in reasons) or bool(facts.red_flag_findings)
        if finding and (facts.has_active_lbp or is_for_lbp(referral, facts, vs)):
            flagged.append(referral)
    return [Decision(RED_FLAG_REVIEW, orders=tuple(flagged))] if flagged else []


def referral_decisions(referrals: Iterable[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    """MSC evaluation first, or Prior Notification when the referral may proceed, or nothing for a
    follow-up with the spine surgeon already caring for the patient. One card per kind, however many
    referrals it is about."""
    return merged([d for _referral, decisions in judged_referrals(referrals, facts, knowledge) for d in decisions])


def judged_referrals(
    referrals: Iterable[Resource], facts: PatientFacts, knowledge: Knowledge
) -> list[tuple[Resource, list[Decision]]]:
    """Each of these spine referrals that gets a card, with its decisions: for LBP, not for a red-flag
    reason (spine_referrals has already left out stat and asap ones), not a follow-up with a surgeon seen."""
    found = []
    for referral in referrals:
        if has_red_flag_reason(referral, facts, knowledge) or not is_for_lbp(referral, facts, knowledge.valuesets):
            continue
        decisions = referral_decision(referral, facts, knowledge)
        if decisions:
            found.append((referral, decisions))
    return found


def referral_decision(referral: Resource, facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    about = Decision(
        MSC_EVALUATION_FIRST,
        orders=(referral,),
        reason_codes=tuple(c for c in map(fhir.carried_concept, referral.get("reasonCode") or ()) if c),
        reason_references=tuple(
            r["reference"] for r in fhir.references_in(referral.get("reasonReference")) if "/" in r["reference"]
        ),
    )
    proceed = replace(about, topic=PRIOR_NOTIFICATION_REQUIRED)
    if not facts.is_initial_spine_visit:
        if to_a_surgeon_already_seen(referral, facts):
            return []  # a follow-up visit with the same surgeon: neither the MSC step nor Prior Notification
        basis = "established-spine-care" if facts.established_spine_care else "after-lumbar-surgery"
        return [replace(proceed, basis=basis)]
    exemption = msc_exemption(facts, knowledge)
    if exemption is None:
        return [about]
    if exemption != MSC_SUSPENDED:
        return [replace(proceed, basis=exemption)]
    # Suspended: the MSC card still says what the program expects, beside the PN card that lets it proceed.
    suspension = knowledge.policy.suspension_on(facts.today)
    return [
        replace(about, suspension=suspension, variant=SUSPENDED),
        replace(proceed, suspension=suspension, basis=exemption),
    ]


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


def to_a_surgeon_already_seen(referral: Resource, facts: PatientFacts) -> bool:
    """The referral names as performer a spine surgeon the patient saw for LBP in the window."""
    performers = {fhir.reference_key(ref) for ref in fhir.references_in(referral.get("performer"))}
    for ref in fhir.references_in(referral.get("performer")):
        role = facts.references.resolve(ref, referral) or {}
        performers.add(fhir.reference_key(role.get("practitioner")))
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
        groups[key] = replace(
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
            return [Decision(OPIOID_SPARING_ALTERNATIVES, variant=variant, reason_references=facts.lbp_conditions)]
    return []


def physical_therapy_decisions(facts: PatientFacts) -> list[Decision]:
    """PT first-line for active LBP without physical therapy in the look-back window."""
    if facts.has_active_lbp and not facts.recent_pt:
        return [Decision(PHYSICAL_THERAPY_FIRST_LINE, reason_references=facts.lbp_conditions)]
    return []


def chart_review(facts: PatientFacts) -> list[Decision]:
    """patient-view: recent red-flag findings beside active LBP come before first-line advice."""
    if facts.has_active_lbp and facts.red_flag_findings:
        return [Decision(RED_FLAG_REVIEW)]
    return []


def unjudged_order_data(orders: Iterable[Resource], facts: PatientFacts) -> set[str]:
    """Referenced data that could not be had without which an order cannot be classified: a
    prescription's Medication, a referral's performer."""
    keys: set[str] = set()
    for order in orders:
        if order.get("resourceType") == "MedicationRequest":
            refs = fhir.references_in(order.get("medicationReference"))
        elif order.get("resourceType") == "ServiceRequest":
            refs = fhir.references_in(order.get("performer"))
        elif order.get("resourceType") == "Appointment":
            # Whom the visit is with matters when the appointment names neither service type nor specialty.
            named = order.get("serviceType") or order.get("specialty")
            refs = [] if named else appointment_participants(order)
        else:
            continue
        for ref in refs:
            kind = (fhir.reference_key(ref) or "").split("/")[0]
            if facts.references.is_unknown(ref) and kind in REFERENCED_DATA:
                keys.add(REFERENCED_DATA[kind])
    return keys


def program_referrals(
    orders: Iterable[Resource], facts: PatientFacts, knowledge: Knowledge
) -> list[tuple[Resource, list[Decision]]]:
    """The spine-surgical referrals the Prior Notification rule is about, each with its cards' decisions.

    What referral_decisions judges, one referral at a time: none while a red-flag finding waits to be
    ruled out, none for an emergent referral, one not for LBP, or a follow-up with a surgeon already seen.
    """
    if not in_scope(facts):
        return []
    referrals = spine_referrals(orders, facts, knowledge)
    if red_flag_review(referrals, facts, knowledge):
        return []
    return judged_referrals(referrals, facts, knowledge)
