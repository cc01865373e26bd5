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

from dataclasses import dataclass

from hooks.appointments import (
    being_booked,
    is_initial_spine_visit_for_lbp,
    might_be_with_spine_surgeon,
    referrals,
    visit_npis,
)
from hooks.coverage import CoverageAssertion, PnState, msc_step_applies, pn_state
from hooks.decisions import (
    AT_BOOKING,
    AT_BOOKING_UNCHECKED,
    MSC_EVALUATION_FIRST,
    PRIOR_NOTIFICATION_REQUIRED,
    Decision,
)
from hooks.facts import PatientFacts
from hooks.fhir import Resource
from hooks.knowledge import Knowledge
from hooks.notifications import PriorNotificationOnFile
from hooks.rules import in_scope
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


@dataclass(frozen=True)
class Visit:
    """One proposed initial spine-surgeon visit for LBP, and where the program's requirements stand."""

    appointment: Resource
    pn: PnState
    on_file: PriorNotificationOnFile | None
    msc_expected: bool


def initial_spine_visits(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> list[Resource]:
    """The proposed visits the program's requirements are about."""
    if not in_scope(facts):
        return []
    return [a for a in being_booked(hook_input.appointments()) if is_initial_spine_visit_for_lbp(a, facts, knowledge)]


def needs_prior_notifications(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> bool:
    return bool(initial_spine_visits(hook_input, facts, knowledge))


def visits(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> list[Visit]:
    found = []
    for appointment in initial_spine_visits(hook_input, facts, knowledge):
        state, on_file = pn_state(
            facts.prior_notifications,
            appointment_id=appointment.get("id"),
            npis=visit_npis(appointment, facts.references),
            today=facts.today,
            window_days=knowledge.policy.prior_notification_window_days,
        )
        found.append(Visit(appointment, state, on_file, msc_step_applies(facts, knowledge)))
    return found


def decide(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> list[Decision]:
    decisions = []
    for visit in visits(hook_input, facts, knowledge):
        needs = "msc-done" if facts.msc_done else "no-msc"
        if visit.pn is not PnState.ON_FILE:
            variant = AT_BOOKING if visit.pn is PnState.REQUIRED else AT_BOOKING_UNCHECKED
            decisions.append(
                Decision(PRIOR_NOTIFICATION_REQUIRED, appointment=visit.appointment, variant=variant, form_needs=needs)
            )
        if visit.msc_expected:
            decisions.append(Decision(MSC_EVALUATION_FIRST, appointment=visit.appointment, variant=AT_BOOKING))
    return decisions


def coverage(hook_input: HookInput, facts: PatientFacts, knowledge: Knowledge) -> list[CoverageAssertion]:
    """Written on the ServiceRequest the appointment is based on when there is one (CRD), else on the appointment."""
    coverage_key = facts.primary_coverage_key
    if coverage_key is None:
        return []  # CRD: the extension must reference a Coverage; without one it cannot be returned
    assertions = []
    for visit in visits(hook_input, facts, knowledge):
        based_on = referrals(visit.appointment, facts.references)
        target = based_on[0] if based_on else visit.appointment
        assertions.append(CoverageAssertion(target, coverage_key, visit.pn, visit.on_file, visit.msc_expected))
    return assertions


def relevant(hook_input: HookInput, knowledge: Knowledge) -> bool:
    return any(might_be_with_spine_surgeon(a, knowledge) for a in being_booked(hook_input.appointments()))


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
    decide=decide,
    relevant=relevant,
    judged_orders=HookInput.appointments,
    crd_topics=(PRIOR_NOTIFICATION_REQUIRED, MSC_EVALUATION_FIRST),
    coverage=coverage,
    needs_prior_notifications=needs_prior_notifications,
)
