"""One hook call, free of HTTP: validate → gather the patient's facts → decide → render.

The web layer (and the preview page, and any command) hands over the parsed body with what the call
needs; it gets back a typed result it can answer, log, count and record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cards.render import RenderContext, render_cards
from cds_service.content.loader import Content
from cds_service.errors import PrefetchUnavailable
from cds_service.pipeline.fhir_client import FhirFetcher
from cds_service.pipeline.prefetch import Gathered, gather
from cds_service.pipeline.validation import validate_request
from hooks.decisions import Decision, keys_that_matter
from hooks.facts import PatientRecord, build_facts, references_needed
from hooks.rules import unjudged_order_data
from hooks.service import HookInput, ServiceDefinition


@dataclass(frozen=True)
class CallDependencies:
    """What a call reads besides its body."""

    content: Content
    fetcher: FhirFetcher | None  # None: nothing is ever fetched
    today: date  # the clinical today
    base_url: str  # absolute, no trailing slash: where card links point


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
        return {"cards": self.cards}


def answer_hook(service: ServiceDefinition, body: Any, deps: CallDependencies) -> CallResult:
    """The CDS Hooks answer to a call; raises a ClientError (BadRequest, PrefetchUnavailable) instead."""
    validate_request(service, body)
    knowledge = deps.content.knowledge
    hook_input = HookInput(body["context"])
    silent = CallResult(hook_instance=body["hookInstance"], content_version=deps.content.version)
    if not service.relevant(hook_input, knowledge):
        return silent
    orders = service.judged_orders(hook_input)

    def needs(record: PatientRecord) -> set[str]:
        return references_needed(record, orders, knowledge, deps.today)

    gathered = gather(service, body, deps.fetcher, needs)
    fetched = {key: round(ms, 1) for key, ms in gathered.fetched.items()}
    facts = build_facts(gathered.record, knowledge, deps.today)
    decisions = service.decide(hook_input, facts, knowledge)
    unjudged = unjudged_order_data(orders, facts)
    refuse_if_unsafe(service, body["hookInstance"], decisions, gathered, fetched, unjudged)
    region = deps.content.directory.region_for(facts.postal_code)
    context = RenderContext(deps.content, deps.base_url, body["context"]["patientId"], region)
    return CallResult(
        hook_instance=silent.hook_instance,
        content_version=silent.content_version,
        cards=render_cards(decisions, context),
        decisions=tuple(decisions),
        fetched=fetched,
        missing=dict(sorted(gathered.missing.items())),
    )


def refuse_if_unsafe(
    service: ServiceDefinition,
    hook_instance: str,
    decisions: list[Decision],
    gathered: Gathered,
    fetched: Mapping[str, float],
    unjudged: set[str] | None = None,
) -> None:
    """412 when data that could not be had could make a card wrong, or leaves nothing to decide on."""
    matter = keys_that_matter(decisions, set(gathered.missing), unjudged or ())
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
        )
