"""The program's rules over orders and PatientFacts. Pure functions, no HTTP."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from hooks import fhir
from hooks.decisions import (
    MSC_EVALUATION_FIRST,
    OPIOID_SPARING_ALTERNATIVES,
    PHYSICAL_THERAPY_FIRST_LINE,
    PRIOR_NOTIFICATION_REQUIRED,
    Decision,
)
from hooks.facts import PatientFacts, is_for_lbp
from hooks.fhir import Resource
from hooks.knowledge import Knowledge
from hooks.orders import is_emergent_order, is_opioid_analgesic, is_spine_surgical_referral


def in_scope(facts: PatientFacts) -> bool:
    """Adults without an emergent or urgent presentation; everyone else gets silence."""
    return facts.is_adult and not facts.red_flags


def order_decisions(orders: list[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    """The order hooks' cards: spine-surgical referrals and opioid analgesics among these orders."""
    if not in_scope(facts):
        return []
    return referral_decisions(orders, facts, knowledge) + opioid_decisions(orders, facts, knowledge)


def concerns_program(orders: Iterable[Resource], knowledge: Knowledge) -> bool:
    """Any spine-surgical referral or opioid analgesic among these orders."""
    return any(is_spine_surgical_referral(o, knowledge) or is_opioid_analgesic(o, knowledge) for o in orders)


def referral_decisions(orders: Iterable[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    """MSC evaluation first, or Prior Notification when the referral may proceed."""
    decisions: list[Decision] = []
    for order in orders:
        if not is_spine_surgical_referral(order, knowledge):
            continue
        if is_emergent_order(order, facts, knowledge) or not is_for_lbp(order, facts, knowledge.valuesets):
            continue
        about = Decision(
            MSC_EVALUATION_FIRST,
            order=order,
            reason_codes=tuple(c for c in map(fhir.carried_concept, order.get("reasonCode") or ()) if c),
            reason_references=tuple(
                r["reference"] for r in order.get("reasonReference") or () if isinstance(r.get("reference"), str)
            ),
        )
        suspension = knowledge.policy.suspension_on(facts.today)
        if facts.msc_done or facts.medicare_advantage:
            basis = "msc-done" if facts.msc_done else "medicare-advantage"
            decisions.append(replace(about, topic=PRIOR_NOTIFICATION_REQUIRED, basis=basis))
        elif suspension is not None:
            decisions.append(replace(about, suspension=suspension))
            decisions.append(
                replace(about, topic=PRIOR_NOTIFICATION_REQUIRED, suspension=suspension, basis="suspended")
            )
        else:
            decisions.append(about)
    return decisions


def opioid_decisions(orders: Iterable[Resource], facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    """One opioid-sparing card when any opioid analgesic here is for an adult's LBP."""
    if facts.opioid_excluded:
        return []
    for order in orders:
        if is_opioid_analgesic(order, knowledge) and is_for_lbp(order, facts, knowledge.valuesets):
            return [Decision(OPIOID_SPARING_ALTERNATIVES, reason_references=facts.lbp_conditions)]
    return []


def physical_therapy_decisions(facts: PatientFacts) -> list[Decision]:
    """PT first-line for active LBP without physical therapy in the look-back window."""
    if facts.has_active_lbp and not facts.recent_pt:
        return [Decision(PHYSICAL_THERAPY_FIRST_LINE, reason_references=facts.lbp_conditions)]
    return []
