"""One hook call, free of HTTP: validate → decode the context → gather the patient's record → judge each
order or appointment once (fetching the references the rules looked up, in rounds) → settle with the Prior
Notifications on file → render.

Da Vinci CRD rides along: the request's CRD configuration chooses which card types (and whether the
Coverage Information system actions) are answered, and services that supply coverage information
return it as systemActions.

The web layer (and the preview page, and any command) hands over the parsed body with what the call
needs; it gets back a typed result it can answer, log, count and record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

from cards.coverage import CoverageContext, render_system_actions
from cards.render import RenderContext, Uuids, render_cards
from cds_service.content.forms import PN_FORM_ID
from cds_service.content.loader import Content
from cds_service.errors import BadRequest, PrefetchUnavailable
from cds_service.pipeline import crd
from cds_service.pipeline.decode import decode, decode_many, note_repairs
from cds_service.pipeline.fhir_client import FhirFetcher
from cds_service.pipeline.prefetch import FetchSession, Gathered, gather
from cds_service.pipeline.prior_notification import (
    FormLinks,
    NotificationStore,
    new_form_context,
    notifications_on_file,
    prefill,
    questionnaire_canonical,
)
from cds_service.pipeline.validation import check_selections, format_path, log_path, validate_request
from cds_service.storage.prior_notifications import Scope
from hooks.coverage import CoverageAssertion
from hooks.decisions import MSC_EVALUATION_FIRST, PRIOR_NOTIFICATION_REQUIRED, Decision, keys_that_matter
from hooks.facts import PatientFacts, build_facts
from hooks.knowledge import Knowledge
from hooks.model import Appointment, Resource
from hooks.record import REFERENCED_DATA, PatientRecord
from hooks.rules import Judgement, settle
from hooks.service import HookInput, ServiceDefinition

# Rounds of fetching referenced resources: what the rules looked up and did not find is fetched, and the
# call judged again (a reason Condition found may lead a rule to read another reference).
REFERENCE_ROUNDS = 3


class CallDependencies(msgspec.Struct, frozen=True):
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
    scope: Scope = msgspec.field(default_factory=Scope)


@dataclass(frozen=True)
class IssuedCardRef:
    uuid: str
    topic: str


class CallResult(msgspec.Struct, frozen=True):
    hook_instance: str
    content_version: str
    cards: list[dict[str, Any]] = msgspec.field(default_factory=list)
    decisions: tuple[Decision, ...] = ()
    system_actions: list[dict[str, Any]] = msgspec.field(default_factory=list)
    fetched: Mapping[str, float] = msgspec.field(default_factory=dict)  # key → milliseconds
    missing: Mapping[str, str] = msgspec.field(default_factory=dict)  # key → why it could not be had

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
    sources: dict[int, dict[str, Any]] = {}
    hook_input = decode_context(body["context"], sources)
    silent = CallResult(hook_instance=body["hookInstance"], content_version=content.version)
    if not service.relevant(hook_input, knowledge):
        return silent
    session = gather(service, body, deps.fetcher)
    judged = judge(service, hook_input, session, knowledge, deps.today)
    facts, judgement = judged.facts, judged.judgement
    patient_id = body["context"]["patientId"]
    coverage_wanted = configuration.coverage_info and service.coverage_information
    if any(subject.at_booking or coverage_wanted for subject in judgement.pn_subjects):
        since = deps.today - timedelta(days=knowledge.policy.prior_notification_window_days)
        found = notifications_on_file(deps.notifications, deps.scope, patient_id, since)
        facts = msgspec.structs.replace(facts, prior_notifications=found)
    settled = settle(judgement, facts, knowledge)
    decisions = [d for d in settled.decisions if configuration.allows(d, content.crd)]
    assertions = list(settled.assertions) if coverage_wanted else []
    gathered = session.out
    fetched = {key: round(ms, 1) for key, ms in gathered.fetched.items()}
    concerns = decisions + coverage_concerns(assertions)
    refuse_if_unsafe(service, body["hookInstance"], concerns, judged.missing(gathered.missing), fetched, judgement)
    decisions = [with_form_link(d, judged.record, facts, deps, patient_id) for d in decisions]
    region = content.directory.region_for(facts.postal_code)
    uuids = Uuids()
    context = RenderContext(content, deps.base_url, patient_id, region, uuids)
    gathered.sources.update(sources)
    return CallResult(
        hook_instance=silent.hook_instance,
        content_version=silent.content_version,
        cards=render_cards(decisions, context),
        decisions=tuple(decisions),
        system_actions=render_system_actions(assertions, coverage_context(deps, uuids, gathered)),
        fetched=fetched,
        missing=dict(sorted(gathered.missing.items())),
    )


def decode_context(context: Mapping[str, Any], sources: dict[int, dict[str, Any]]) -> HookInput:
    """The draft orders and proposed appointments, typed; 400 naming the path for one not shaped as FHIR says.
    Each typed resource's JSON is noted in `sources` (CRD coverage information echoes it)."""
    found: dict[str, list[Resource]] = {"draftOrders": [], "appointments": []}
    for key, what in (("draftOrders", "A draft order"), ("appointments", "A proposed appointment")):
        sent = [entry["resource"] for entry in context[key]["entry"]] if key in context else []
        typed = decode_many(sent)  # nearly always: all of them read as they are, in one call
        if typed is not None:
            found[key] = typed
            sources.update(zip(map(id, typed), sent, strict=True))
            continue
        for index, raw in enumerate(sent):
            decoded = decode(raw)
            if decoded.problem is not None:
                path = ("context", key, "entry", index, "resource", *decoded.problem.path)
                raise BadRequest(
                    f"{what} is not shaped as FHIR R4 says: {format_path(path)}: {decoded.problem.expectation}",
                    where=f"{log_path(path)} (shape)",
                )
            if decoded.resource is not None:
                note_repairs(decoded, "context", decoded.resource.resource_type)
                found[key].append(decoded.resource)
                sources[id(decoded.resource)] = raw
    if "selections" in context:  # any draft order, whether or not of a type the rules read
        drafted = {
            f"{entry['resource'].get('resourceType')}/{entry['resource'].get('id')}"
            for entry in context["draftOrders"]["entry"]
        }
        check_selections(context["selections"], drafted)
    return HookInput(
        draft_orders=tuple(found["draftOrders"]),
        selections=frozenset(context.get("selections") or ()),
        appointments=tuple(a for a in found["appointments"] if isinstance(a, Appointment)),
    )


class Judged(msgspec.Struct, frozen=True):
    """The call judged on all the data that could be had; which references it read and could not have."""

    record: PatientRecord
    facts: PatientFacts
    judgement: Judgement
    unknown_read: frozenset[str]  # 'Type/id' a fact or a judged order's reason read and could not have
    foreign: frozenset[str]  # 'Type/id' looked up on another server than the EHR's: never to be had

    def missing(self, missing: Mapping[str, str]) -> dict[str, str]:
        """The missing data that could bear on this answer: a referenced kind only when a rule read a
        reference of that kind that could not be had (a target's own references weigh through `unjudged`).
        References to another server than the EHR's are such data too."""
        read = {kind_of(key) for key in self.unknown_read} | set(self.judgement.unjudged)
        found = {k: why for k, why in missing.items() if k not in REFERENCED_KINDS or k in read}
        foreign = sorted(self.foreign)
        for kind in sorted({kind_of(key) for key in foreign} & read - set(found)):
            named = [key for key in foreign if kind_of(key) == kind]
            found[kind] = f"{', '.join(named[:3])}: on another server than fhirServer, never looked up there"
        return found


REFERENCED_KINDS = frozenset(REFERENCED_DATA.values())


def kind_of(key: str) -> str:
    """The data a referenced 'Type/id' is (referencedConditions…); only for types in REFERENCED_DATA."""
    return REFERENCED_DATA[key.split("/")[0]]


def referenced(keys: Iterable[str]) -> set[str]:
    """The 'Type/id' keys of the types the rules read by reference (REFERENCED_DATA)."""
    return {key for key in keys if key.split("/")[0] in REFERENCED_DATA}


def judge(
    service: ServiceDefinition, hook_input: HookInput, session: FetchSession, knowledge: Knowledge, today: date
) -> Judged:
    """Facts and judgement, in rounds: the references the rules looked up and did not find are fetched (one
    search per type) and the call judged again, until nothing new is wanted. A reference that could not be
    had is then unresolved: the rules read it as unknown, never as absent."""
    absent: set[str] = set()  # fetched, and the server has no such resource: no data
    unresolved: set[str] = set()  # could not be had
    server = session.body.get("fhirServer")
    for _round in range(REFERENCE_ROUNDS + 1):
        record = PatientRecord.of(session.out.resources, unresolved, server if isinstance(server, str) else None)
        facts = build_facts(record, knowledge, today)
        read_by_facts = referenced(record.references.not_found | record.references.foreign)
        judgement = service.judge(hook_input, facts, knowledge)
        looked_up = referenced(record.references.not_found) - absent
        wanted = looked_up - unresolved
        if not wanted:
            foreign = referenced(record.references.foreign)
            read = (read_by_facts | ((looked_up | foreign) - judgement.own_references)) - absent
            return Judged(record, facts, judgement, frozenset(read & (unresolved | foreign)), frozenset(foreign))
        if _round == REFERENCE_ROUNDS:
            unresolved |= wanted  # rounds spent: what is still wanted counts as unknown
            continue
        found, failed = session.by_reference(wanted)
        session.out.resources += found
        unresolved |= failed
        absent |= wanted - failed - {resource.key for resource in found}
    raise AssertionError("unreachable: the last round leaves nothing wanted")


def coverage_concerns(assertions: list[CoverageAssertion]) -> list[Decision]:
    """The data each Coverage Information depends on, as the card saying the same would."""
    return [Decision(MSC_EVALUATION_FIRST if a.msc_expected else PRIOR_NOTIFICATION_REQUIRED) for a in assertions]


def with_form_link(
    decision: Decision, record: PatientRecord, facts: PatientFacts, deps: CallDependencies, patient_id: str
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
        prefill=prefill(decision.appointment, record, facts, form),
        now=datetime.now(UTC),
    )
    return msgspec.structs.replace(decision, form_token=token)


def coverage_context(deps: CallDependencies, uuids: Uuids, gathered: Gathered) -> CoverageContext:
    form = deps.content.forms[PN_FORM_ID]
    return CoverageContext(
        crd=deps.content.crd,
        questionnaire=questionnaire_canonical(deps.base_url, form),
        today=deps.today,
        window_days=deps.content.knowledge.policy.prior_notification_window_days,
        new_id=uuids.new,
        source_of=gathered.source_of,
    )


def refuse_if_unsafe(
    service: ServiceDefinition,
    hook_instance: str,
    decisions: list[Decision],
    missing: Mapping[str, str],
    fetched: Mapping[str, float],
    judgement: Judgement,
) -> None:
    """412 when data that could not be had could change this answer: make a card wrong, leave a judged
    order unclassified, or leave nothing to decide on."""
    matter = keys_that_matter(decisions, set(missing), judgement.unjudged)
    if matter:
        reasons = "; ".join(
            f"{key} ({service.prefetch.get(key, 'resources referenced by the request or the patient data')}): "
            f"{missing[key]}"
            for key in sorted(matter)
        )
        raise PrefetchUnavailable(
            f"Data this service needs could not be obtained: {reasons}. "
            "Prefetch these keys, or send a fhirServer this service may call with fhirAuthorization.",
            hook_instance=hook_instance,
            fetched=fetched,
            missing=dict(missing),
            keys=tuple(sorted(matter)),
        )
