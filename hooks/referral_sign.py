"""order-sign: the same referral and opioid rules over every order about to be signed, and the CRD
Coverage Information (the Prior Notification requirement) on each spine-surgical referral for LBP."""

from __future__ import annotations

from hooks import referral_select
from hooks.facts import PatientFacts
from hooks.knowledge import Knowledge
from hooks.orders import might_concern_program
from hooks.rules import Judgement, judge_orders
from hooks.service import HookInput, ServiceDefinition


def judge(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> Judgement:
    return judge_orders(hook_input.draft_orders, facts, knowledge)


def relevant(hook_input: HookInput, knowledge: Knowledge) -> bool:
    return might_concern_program(hook_input.draft_orders, knowledge)


SERVICE = ServiceDefinition(
    id="lbp-referral-sign",
    hook="order-sign",
    title="Low back pain: spine referral and opioid check at signing",
    description=(
        "At signing, checks every draft order: a spine-surgical referral for an adult with low back pain gets the "
        "Medical Spine Center or Prior Notification card; an opioid analgesic gets opioid-sparing alternatives."
    ),
    prefetch=referral_select.SERVICE.prefetch,  # the same patient data as at order-select
    judge=judge,
    relevant=relevant,
    crd_topics=referral_select.SERVICE.crd_topics,
    coverage_information=True,
)
