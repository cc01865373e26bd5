"""Decision + guideline_data text → CDS Hooks 2.0 card JSON."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import urlencode

import msgspec
import orjson

from cards.model import (
    APPOINTMENT_WITH_LIMIT,
    ASSOCIATED_RESOURCE_EXTENSION,
    CONTENT_VERSION_EXTENSION,
    CRD_CARD_TYPE_EXTENSION,
    CRD_CARD_TYPE_SYSTEM,
    NO_APPOINTMENT_DATE,
    NO_APPOINTMENT_WITH,
    NO_END_DATE,
    NO_REGION,
    SUMMARY_LIMIT,
    CardContent,
    Content,
    JsonObject,
    JsonValue,
    Region,
)
from hooks.appointments import visit_with
from hooks.decisions import Decision
from hooks.fhir import References
from hooks.model import Appointment, Resource

SCALARS = frozenset({str, int, float, bool, type(None)})
# A UUID's version field and RFC 4122 variant bits (RFC 9562 section 5.4), as the uuid module sets them.
UUID_VERSION_FIELDS = (0xF000 << 64) | (0xC000 << 48)
UUID_VERSION_7 = (0x7000 << 64) | (0x8000 << 48)


RANDOM_POOL_BYTES = 4000  # random bits for 400 UUIDs per os.urandom call


class RandomPool(threading.local):
    """A thread's unused bytes from os.urandom: each call of it lets go of the GIL, and under load getting it
    back cost more than the UUIDs themselves. Per thread, so that two threads never take the same bytes."""

    def __init__(self) -> None:
        self.pool = b""
        self.used = 0

    def take(self, count: int) -> bytes:
        if self.used + count > len(self.pool):
            self.pool, self.used = os.urandom(RANDOM_POOL_BYTES), 0
        self.used += count
        return self.pool[self.used - count : self.used]


random_pool = RandomPool()


def forget_random_pool() -> None:
    """In a forked child (a server's worker): the parent's unused bytes are the parent's, never drawn again."""
    global random_pool  # replaced whole: the child's thread-local data is a copy of the parent's
    random_pool = RandomPool()


os.register_at_fork(after_in_child=forget_random_pool)


class Uuids:
    """Time-ordered UUIDs (version 7, RFC 9562 section 5.7): the Unix time in milliseconds, then 74 random bits
    from os.urandom (by way of the thread's RandomPool).

    Time-ordered because issued_cards is keyed by the card's uuid: random keys land all over the key's index,
    so each stored card dirtied a page of its own (SQLite wrote 8.5 ms per 400 cards at commit, 3.2 ms with
    these; BENCHMARKS.md, "The serving stack", round 3).
    """

    def new(self) -> str:
        random_bits = int.from_bytes(random_pool.take(10)) & ~UUID_VERSION_FIELDS | UUID_VERSION_7
        # What str(uuid.UUID(int=…)) gives, at half the cost.
        digits = f"{time.time_ns() // 1_000_000 << 80 | random_bits:032x}"
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class RenderContext(msgspec.Struct, frozen=True):
    content: CardContent
    base_url: str  # absolute, without trailing slash: where this service's pages are served
    patient_id: str
    region: Region | None
    uuids: Uuids = msgspec.field(default_factory=Uuids)


def render_cards(decisions: list[Decision], ctx: RenderContext) -> list[JsonObject]:
    """The cards of one response. A suggestion that creates only orders an earlier card of the same
    response already offers is left out: accepting both would create the same order twice."""
    offered: set[str] = set()  # order templates (orders.yaml) a suggestion of this response creates
    return [render_card(decision, ctx, offered) for decision in decisions]


def card_text(decision: Decision, template: Content) -> Content:
    """The card's text: its `when_<variant>` fields over the base ones when the rules chose a variant."""
    variant = template.get(f"when_{decision.variant}") if decision.variant else None
    return {**template, **variant} if variant else template


def render_card(decision: Decision, ctx: RenderContext, offered: set[str]) -> JsonObject:
    """One card; `offered` (the order templates earlier cards' suggestions create) grows with its own."""
    cards = ctx.content.cards
    template = cards["cards"][decision.topic]
    text = card_text(decision, template)
    values = placeholder_values(decision, ctx)
    card: JsonObject = {
        "uuid": ctx.uuids.new(),
        "summary": shorten(text["summary"].format_map(values)),
        "indicator": text["indicator"],
        "detail": text["detail"].format_map(values).strip(),
        "source": {
            "label": cards["source"]["label"],
            "url": cards["source"]["url"],
            "topic": {"system": cards["topic_system"], "code": decision.topic, "display": template["topic_display"]},
            "extension": source_extension(decision.topic, ctx),
        },
    }
    suggestions = []
    for suggestion in text.get("suggestions", ()):
        creates = {a["resource"] for a in suggestion["actions"] if a["type"] == "create"}
        if creates and creates <= offered:
            continue
        rendered = render_suggestion(suggestion, decision, ctx)
        if rendered:
            suggestions.append(rendered)
            offered |= creates
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    card["overrideReasons"] = [dict(cards["override_reasons"][name]) for name in text["override_reasons"]]
    card["links"] = [render_link(name, values, ctx, decision) for name in text["links"]]
    about = resource_keys(decision.about)
    if about:
        # Da Vinci CRD: which of the context's orders or appointments the card is about.
        card["extension"] = {ASSOCIATED_RESOURCE_EXTENSION: [{"reference": key} for key in about]}
    return card


def source_extension(topic: str, ctx: RenderContext) -> JsonObject:
    """The content version of the wording, and the card's Da Vinci CRD card type."""
    extension: JsonObject = {CONTENT_VERSION_EXTENSION: ctx.content.version}
    crd = ctx.content.crd
    kind = crd.get("card_types", {}).get(topic)
    if kind is not None:
        display = crd["configuration_options"][kind]["display"]
        extension[CRD_CARD_TYPE_EXTENSION] = {"system": CRD_CARD_TYPE_SYSTEM, "code": kind, "display": display}
    return extension


def placeholder_values(decision: Decision, ctx: RenderContext) -> dict[str, str]:
    suspension = decision.suspension
    values = {
        "region": ctx.region.name if ctx.region else NO_REGION,
        "notice": suspension.notice if suspension else "",
        "suspended_since": suspension.start.isoformat() if suspension else "",
        "suspended_until": suspension.end.isoformat() if suspension and suspension.end else NO_END_DATE,
        "form_needs": ctx.content.cards["form_needs"].get(decision.form_needs or "", ""),
        **appointment_values(decision.appointment),
    }
    basis = ctx.content.cards["bases"].get(decision.basis or "", "")
    values["basis"] = basis.format_map({**values, "basis": ""})
    return values


def appointment_values(appointment: Appointment | None) -> dict[str, str]:
    """When and with whom, as the EHR wrote them (its local time, without the offset)."""
    if appointment is None:
        return {"appointment_date": NO_APPOINTMENT_DATE, "appointment_with": NO_APPOINTMENT_WITH}
    start = appointment.start
    when = f"{start[:10]} {start[11:16]}".strip() if start is not None and len(start) >= 10 else NO_APPOINTMENT_DATE
    with_whom = visit_with(appointment, References())[:APPOINTMENT_WITH_LIMIT]
    return {"appointment_date": when, "appointment_with": with_whom or NO_APPOINTMENT_WITH}


def shorten(summary: str) -> str:
    """Placeholders can lengthen a summary; the spec caps it, so cut at a word (validation should prevent it)."""
    if len(summary) <= SUMMARY_LIMIT:
        return summary
    return summary[: SUMMARY_LIMIT - 1].rsplit(" ", 1)[0] + "…"


def render_suggestion(template: Content, decision: Decision, ctx: RenderContext) -> JsonObject | None:
    actions = [a for t in template["actions"] for a in render_actions(t, decision, ctx)]
    if not actions:
        return None  # only deletes, and no draft order to delete
    suggestion: JsonObject = {"label": template["label"], "uuid": ctx.uuids.new()}
    if template.get("recommended"):
        suggestion["isRecommended"] = True
    suggestion["actions"] = actions
    return suggestion


def resource_keys(resources: Iterable[Resource]) -> list[str]:
    """'Type/id' of each of these resources that has one."""
    return [key for resource in resources if (key := resource.key)]


def render_actions(template: Content, decision: Decision, ctx: RenderContext) -> list[JsonObject]:
    """A create action carries a new order; a delete names each draft order the card is about (none
    when there is no draft order, or one without an id)."""
    if template["type"] == "delete":
        return [
            {"type": "delete", "description": template["description"], "resourceId": key}
            for key in resource_keys(decision.orders)
        ]
    resource = new_order(template["resource"], decision, ctx)
    return [{"type": "create", "description": template["description"], "resource": resource}]


def new_order(name: str, decision: Decision, ctx: RenderContext) -> JsonObject:
    resource: JsonObject = orjson.loads(ctx.content.order_json[name])
    resource["subject"] = {"reference": f"Patient/{ctx.patient_id}"}
    if decision.reason_codes:
        # The order's own copy, made by orjson in one pass (thaw's walk cost as much as the rest of the order).
        resource["reasonCode"] = orjson.loads(orjson.dumps(decision.reason_codes, default=dict))
    if decision.reason_references:
        resource["reasonReference"] = [{"reference": ref} for ref in decision.reason_references]
    return resource


def render_link(name: str, values: Mapping[str, str], ctx: RenderContext, decision: Decision) -> dict[str, str]:
    link = ctx.content.cards["links"][name]
    if "url" in link:
        url = link["url"]
    elif link.get("signed_form"):
        # The signed reference to the form's stored context; without one, the blank printable form.
        url = f"{ctx.base_url}{link['path']}" + (f"/{decision.form_token}" if decision.form_token else "")
    else:
        query = region_query(ctx.region.id) if link.get("region_filter") and ctx.region else ""
        url = f"{ctx.base_url}{link['path']}{query}"
    return {"label": link["label"].format_map(values), "url": url, "type": "absolute"}


@lru_cache(maxsize=256)
def region_query(region_id: str) -> str:
    """A page's query naming a region (the directory has a handful of them)."""
    return f"?{urlencode({'region': region_id})}"


def thaw(value: JsonValue) -> JsonValue:
    """Plain, JSON-serialisable copies of read-only content."""
    kind = type(value)
    # Exact types first: content is frozen into these, and isinstance() against the Mapping ABC
    # was most of the cost of rendering a card.
    if kind in SCALARS:
        return value
    if kind is MappingProxyType or kind is dict or isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if kind is tuple or kind is list or isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
