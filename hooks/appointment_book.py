"""appointment-book: the spine surgical practice books an adult's initial office visit for low back pain.

The program's rule bites here: "Spine Surgical practices must submit a completed PN form prior to
seeing the patient for the initial office visit for low back pain. Office visits claims without
prior notification by the surgical practice will be denied to provider liability." One card per
concern: Prior Notification (warning, with the form) when none is on file, and the MSC evaluation the
program expects first (info) when none is on record and the member is not exempt. With a PN on file
there is no card: the Coverage Information system action records it on the appointment (CRD asks not
to repeat a system action's information in a card).
"""

from __future__ import annotations

from hooks.appointments import being_booked, might_be_with_spine_surgeon
from hooks.decisions import MSC_EVALUATION_FIRST, PRIOR_NOTIFICATION_REQUIRED
from hooks.facts import PatientFacts
from hooks.knowledge import Knowledge
from hooks.rules import Judgement, judge_bookings
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
    return judge_bookings(hook_input.appointments, facts, knowledge)


def relevant(hook_input: HookInput, knowledge: Knowledge) -> bool:
    return any(might_be_with_spine_surgeon(a, knowledge) for a in being_booked(hook_input.appointments))


SERVICE = ServiceDefinition(
    id="lbp-appointment-book",
    hook="appointment-book",
    title="Low back pain: Prior Notification and MSC step when booking a spine surgeon visit",
    description=(
        "When a spine surgical practice books an adult's initial office visit for low back pain with an "
        "orthopaedic spine surgeon or neurosurgeon: warns when no Prior Notification is on file (claims for the "
        "visit are denied without one) with a link to the pre-filled PN form, says when the program expects a "
        "Medical Spine Center evaluation first, and adds Da Vinci CRD coverage information to the appointment."
    ),
    prefetch=prefetch(
        PATIENT, CONDITIONS, COVERAGES, ENCOUNTERS, SERVICE_REQUESTS, PROCEDURES, PRACTITIONER_ROLES, PRACTITIONERS
    ),
    judge=judge,
    relevant=relevant,
    crd_topics=(PRIOR_NOTIFICATION_REQUIRED, MSC_EVALUATION_FIRST),
    coverage_information=True,
)
