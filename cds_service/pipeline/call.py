"""One hook call, free of HTTP: validate → gather the patient's facts → decide → render.

Da Vinci CRD rides along: the request's CRD configuration chooses which card types (and whether the
Coverage Information system actions) are answered, and services that supply coverage information
return it as systemActions.

The web layer (and the preview page, and any command) hands over the parsed body with what the call
needs; it gets back a typed result it can answer, log, count and record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cards.coverage import CoverageContext, render_system_actions
from cards.render import RenderContext, Uuids, render_cards
from cds_service.content.forms import PN_FORM_ID
from cds_service.content.loader import Content
from cds_service.errors import PrefetchUnavailable
from cds_service.pipeline import crd
from cds_service.pipeline.fhir_client import FhirFetcher
from cds_service.pipeline.prefetch import Gathered, gather
from cds_service.pipeline.prior_notification import (
    FormLinks,
    NotificationStore,
    new_form_context,
    notifications_on_file,
    prefill,
    questionnaire_canonical,
)
from cds_service.pipeline.validation import validate_request
from cds_service.storage.prior_notifications import Scope
from hooks.coverage import CoverageAssertion
from hooks.decisions import MSC_EVALUATION_FIRST, PRIOR_NOTIFICATION_REQUIRED, Decision, keys_that_matter
from hooks.facts import PatientFacts, PatientRecord, build_facts, references_needed
from hooks.rules import unjudged_order_data
from hooks.service import HookInput, ServiceDefinition


@dataclass(frozen=True)
class CallDependencies:
    """What a call reads besides its body."""

    content: Content
    fetcher: FhirFetcher | None  # None: nothing is ever fetched
    today: date  # the clinical today
    base_url: str  # absolute, no trailing slash: where card links point
    # Prior Notifications: where they are read and form contexts stored (None: none on file, and the
    # cards link the blank form, as on the preview page), how form links are signed, and which EHR
    # the call comes from (its JWT issuer and tenant): patient ids are compared within it.
    notifications: NotificationStore | None = None
    form_links: FormLinks | None = None
    scope: Scope = field(default_factory=Scope)


@dataclass(frozen=True)
class IssuedCardRef:
    uuid: str
    topic: str


@dataclass(frozen=True)
class CallResult:
    hook_instance: str
    content_version: str
    cards: list[dict[str, Any]] = field(default_factory=list)
    decisions: tuple[Decision, ...] = ()
    system_actions: list[dict[str, Any]] = field(default_factory=list)
    fetched: Mapping[str, float] = field(default_factory=dict)  # key → milliseconds
    missing: Mapping[str, str] = field(default_factory=dict)  # key → why it could not be had

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(decision.topic for decision in self.decisions)

    @property
    def issued(self) -> tuple[IssuedCardRef, ...]:
        """Each card's uuid with its topic (one card per decision, in order)."""
        return tuple(
            IssuedCardRef(card["uuid"], decision.topic)
            for card, decision in zip(self.cards, self.decisions, strict=True)
        )

    def response(self) -> dict[str, Any]:
        if self.system_actions:
            return {"cards": self.cards, "systemActions": self.system_actions}
        return {"cards": self.cards}


def answer_hook(service: ServiceDefinition, body: Any, deps: CallDependencies) -> CallResult:
    """The CDS Hooks answer to a call; raises a ClientError (BadRequest, PrefetchUnavailable) instead."""
    validate_request(service, body)
    content = deps.content
    knowledge = content.knowledge
    configuration = crd.read_configuration(service, body, content.crd)
    hook_input = HookInput(body["context"])
    silent = CallResult(hook_instance=body["hookInstance"], content_version=content.version)
    if not service.relevant(hook_input, knowledge):
        return silent
    orders = service.judged_orders(hook_input)

    def needs(record: PatientRecord) -> set[str]:
        return references_needed(record, orders, knowledge, deps.today)

    gathered = gather(service, body, deps.fetcher, needs)
    fetched = {key: round(ms, 1) for key, ms in gathered.fetched.items()}
    facts = build_facts(gathered.record, knowledge, deps.today)
    patient_id = body["context"]["patientId"]
    if service.needs_prior_notifications and service.needs_prior_notifications(hook_input, facts, knowledge):
        since = deps.today - timedelta(days=knowledge.policy.prior_notification_window_days)
        found = notifications_on_file(deps.notifications, deps.scope, patient_id, since)
        facts = replace(facts, prior_notifications=found)
    decisions = [d for d in service.decide(hook_input, facts, knowledge) if configuration.allows(d, content.crd)]
    coverage = service.coverage if configuration.coverage_info else None
    assertions = coverage(hook_input, facts, knowledge) if coverage else []
    unjudged = unjudged_order_data(orders, facts)
    concerns = decisions + coverage_concerns(assertions)
    refuse_if_unsafe(service, body["hookInstance"], concerns, gathered, fetched, unjudged)
    decisions = [with_form_link(d, gathered, facts, deps, patient_id) for d in decisions]
    region = content.directory.region_for(facts.postal_code)
    uuids = Uuids()
    context = RenderContext(content, deps.base_url, patient_id, region, uuids)
    return CallResult(
        hook_instance=silent.hook_instance,
        content_version=silent.content_version,
        cards=render_cards(decisions, context),
        decisions=tuple(decisions),
        system_actions=render_system_actions(assertions, coverage_context(deps, uuids)),
        fetched=fetched,
        missing=dict(sorted(gathered.missing.items())),
    )


def coverage_concerns(assertions: list[CoverageAssertion]) -> list[Decision]:
    """The data each Coverage Information depends on, as the card saying the same would."""
    return [Decision(MSC_EVALUATION_FIRST if a.msc_expected else PRIOR_NOTIFICATION_REQUIRED) for a in assertions]


def with_form_link(
    decision: Decision, gathered: Gathered, facts: PatientFacts, deps: CallDependencies, patient_id: str
) -> Decision:
    """A Prior Notification card for a booking gets a signed link to its pre-filled form."""
    if decision.topic != PRIOR_NOTIFICATION_REQUIRED or decision.appointment is None:
        return decision
    form = deps.content.forms[PN_FORM_ID]
    token = new_form_context(
        deps.notifications,
        deps.form_links,
        scope=deps.scope,
        patient_id=patient_id,
        appointment=decision.appointment,
        prefill=prefill(decision.appointment, gathered.record, facts, form),
        now=datetime.now(UTC),
    )
    return replace(decision, form_token=token)


def coverage_context(deps: CallDependencies, uuids: Uuids) -> CoverageContext:
    form = deps.content.forms[PN_FORM_ID]
    return CoverageContext(
        crd=deps.content.crd,
        questionnaire=questionnaire_canonical(deps.base_url, form),
        today=deps.today,
        window_days=deps.content.knowledge.policy.prior_notification_window_days,
        new_id=uuids.new,
    )


def refuse_if_unsafe(
    service: ServiceDefinition,
    hook_instance: str,
    decisions: list[Decision],
    gathered: Gathered,
    fetched: Mapping[str, float],
    unjudged: set[str],
) -> None:
    """412 when data that could not be had could make a card wrong, or leaves nothing to decide on."""
    matter = keys_that_matter(decisions, set(gathered.missing), unjudged)
    if matter:
        reasons = "; ".join(
            f"{key} ({service.prefetch.get(key, 'resources referenced by the request or the patient data')}): "
            f"{gathered.missing[key]}"
            for key in sorted(matter)
        )
        raise PrefetchUnavailable(
            f"Data this service needs could not be obtained: {reasons}. "
            "Prefetch these keys, or send a fhirServer this service may call with fhirAuthorization.",
            hook_instance=hook_instance,
            fetched=fetched,
            missing=gathered.missing,
            keys=tuple(sorted(matter)),
        )
