"""order-sign: the same referral and opioid rules over every order about to be signed."""

from __future__ import annotations

from hooks import referral_select
from hooks.coverage import CoverageAssertion, referral_assertions
from hooks.decisions import Decision
from hooks.facts import PatientFacts
from hooks.knowledge import Knowledge
from hooks.rules import concerns_program, order_decisions, program_referrals
from hooks.service import HookInput, ServiceDefinition


def decide(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    return order_decisions(hook_input.draft_orders(), facts, knowledge)


def coverage(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> list[CoverageAssertion]:
    """CRD Coverage Information: the Prior Notification requirement on each spine-surgical referral."""
    return referral_assertions(hook_input.draft_orders(), facts, knowledge)


def needs_prior_notifications(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """Only a spine-surgical referral's coverage information says whether a PN is on file."""
    return bool(program_referrals(hook_input.draft_orders(), facts, knowledge))


def relevant(hook_input: HookInput, knowledge: Knowledge) -> bool:
    return concerns_program(hook_input.draft_orders(), knowledge)


SERVICE = ServiceDefinition(
    id="lbp-referral-sign",
    hook="order-sign",
    title="Low back pain: spine referral and opioid check at signing",
    description=(
        "At signing, checks every draft order: a spine-surgical referral for an adult with low back pain gets the "
        "Medical Spine Center or Prior Notification card; an opioid analgesic gets opioid-sparing alternatives."
    ),
    prefetch=referral_select.SERVICE.prefetch,  # the same patient data as at order-select
    decide=decide,
    relevant=relevant,
    judged_orders=HookInput.draft_orders,
    crd_topics=referral_select.SERVICE.crd_topics,
    coverage=coverage,
    needs_prior_notifications=needs_prior_notifications,
)
