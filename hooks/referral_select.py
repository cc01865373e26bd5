"""order-select: a spine-surgical referral or an opioid is selected for an adult with LBP."""

from __future__ import annotations

from hooks.decisions import (
    MSC_EVALUATION_FIRST,
    OPIOID_SPARING_ALTERNATIVES,
    PRIOR_NOTIFICATION_REQUIRED,
    RED_FLAG_REVIEW,
)
from hooks.facts import PatientFacts
from hooks.knowledge import Knowledge
from hooks.orders import might_concern_program
from hooks.rules import Judgement, judge_orders
from hooks.service import (
    CONDITIONS,
    COVERAGES,
    ENCOUNTERS,
    PATIENT,
    PRACTITIONER_ROLES,
    PRACTITIONERS,
    PROCEDURES,
    SERVICE_REQUESTS,
    HookInput,
    ServiceDefinition,
    prefetch,
)


def judge(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> Judgement:
    """Only the newly selected orders are judged; the other drafts are context."""
    return judge_orders(hook_input.selected_orders(), facts, knowledge)


def relevant(hook_input: HookInput, knowledge: Knowledge) -> bool:
    return might_concern_program(hook_input.selected_orders(), knowledge)


SERVICE = ServiceDefinition(
    id="lbp-referral-select",
    hook="order-select",
    title="Low back pain: Medical Spine Center before spine surgery",
    description=(
        "When a referral to orthopedic spine surgery or neurosurgery is selected for an adult with low back pain, "
        "suggests a Medical Spine Center evaluation first (or reminds of Prior Notification when the referral may "
        "proceed), and offers physical therapy and other opioid-sparing care when an opioid analgesic is selected."
    ),
    prefetch=prefetch(
        PATIENT, CONDITIONS, COVERAGES, ENCOUNTERS, SERVICE_REQUESTS, PROCEDURES, PRACTITIONER_ROLES, PRACTITIONERS
    ),
    judge=judge,
    relevant=relevant,
    crd_topics=(MSC_EVALUATION_FIRST, PRIOR_NOTIFICATION_REQUIRED, RED_FLAG_REVIEW, OPIOID_SPARING_ALTERNATIVES),
)
