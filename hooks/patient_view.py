"""patient-view: first-line physical therapy and opioid-sparing care for an adult with active LBP."""

from __future__ import annotations

from hooks.facts import PatientFacts
from hooks.knowledge import Knowledge
from hooks.rules import Judgement, judge_chart
from hooks.service import (
    CONDITIONS,
    ENCOUNTERS,
    MEDICATION_REQUESTS,
    PATIENT,
    PRACTITIONER_ROLES,
    PRACTITIONERS,
    PROCEDURES,
    SERVICE_REQUESTS,
    HookInput,
    ServiceDefinition,
    prefetch,
)


def judge(_hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> Judgement:
    return judge_chart(facts, knowledge)


SERVICE = ServiceDefinition(
    id="lbp-patient-view",
    hook="patient-view",
    title="Low back pain: first-line physical therapy and opioid-sparing care",
    description=(
        "When the chart of an adult with active low back pain opens: suggests physical therapy as first-line care "
        "when none happened in the last 90 days, and opioid-sparing alternatives when an opioid analgesic is active."
    ),
    prefetch=prefetch(
        PATIENT,
        CONDITIONS,
        ENCOUNTERS,
        SERVICE_REQUESTS,
        MEDICATION_REQUESTS,
        PROCEDURES,
        PRACTITIONER_ROLES,
        PRACTITIONERS,
    ),
    judge=judge,
)
