"""order-sign: the same referral and opioid rules over every order about to be signed."""

from __future__ import annotations

from hooks.decisions import Decision
from hooks.facts import Knowledge, PatientFacts
from hooks.rules import concerns_program, in_scope, opioid_decisions, referral_decisions
from hooks.service import (
    CONDITIONS,
    COVERAGES,
    ENCOUNTERS,
    PATIENT,
    SERVICE_REQUESTS,
    HookInput,
    ServiceDefinition,
    prefetch,
)


def decide(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    if not in_scope(facts):
        return []
    drafts = hook_input.draft_orders()
    return referral_decisions(drafts, facts, knowledge) + opioid_decisions(drafts, facts, knowledge)


SERVICE = ServiceDefinition(
    id="lbp-referral-sign",
    hook="order-sign",
    title="Low back pain: spine referral and opioid check at signing",
    description=(
        "At signing, checks every draft order: a spine-surgical referral for an adult with low back pain gets the "
        "Medical Spine Center or Prior Notification card; an opioid analgesic gets opioid-sparing alternatives."
    ),
    prefetch=prefetch(PATIENT, CONDITIONS, COVERAGES, ENCOUNTERS, SERVICE_REQUESTS),
    decide=decide,
    relevant=lambda hook_input, knowledge: concerns_program(hook_input.draft_orders(), knowledge),
)
