"""`lbp-cds demo-data`: a plausible synthetic year of hook calls, cards and feedback, so that every chart and
alarm of the analytics dashboard has something to show on day one.

Three EHRs (one sends no feedback), four services, three content versions (the third with new MSC wording
accepted more often), one topic that stops firing partway (the opioid card, after an "EHR upgrade"), override
comments to read. Everything is random but seeded (the same year each time). Its EHRs' issuers end in
`.demo.invalid`; it refuses a database holding any other EHR's cards, and replaces its own on a second run.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, insert

from cds_service.pipeline.analytics import clinician_pseudonym
from cds_service.storage.analytics import DEMO_ISSUER_SUFFIX, holds_real_cards
from cds_service.storage.database import (
    HookCall,
    IssuedCard,
    Storage,
    call_days,
    card_days,
    clinician_days,
    feedback,
    issued_cards,
    unavailable,
)

DAYS = 365
SEED = 19
VERSIONS = (("demo-2026.1", 0), ("demo-2026.2", 120), ("demo-2026.3", 240))  # (version, first day index)
STOPS_ON_DAY = 300  # the opioid card stops firing from this day (index) on: the seeded stopped-firing alarm
STOPPED_TOPIC = ("lbp-referral-sign", "opioid-sparing-alternatives")
CLINICIANS_PER_EHR = 80


@dataclass(frozen=True)
class Ehr:
    issuer: str
    tenant: str | None
    volume: float  # share of the busiest EHR's calls
    sends_feedback: bool


EHRS = (
    Ehr(f"https://north-health{DEMO_ISSUER_SUFFIX}", "north-clinics", 1.0, True),
    Ehr(f"https://lakes-medical{DEMO_ISSUER_SUFFIX}", "lakes", 0.6, True),
    Ehr(f"https://river-family{DEMO_ISSUER_SUFFIX}", None, 0.3, False),  # never sends feedback
)


@dataclass(frozen=True)
class Topic:
    topic: str
    per_call: float  # chance a call issues this card
    judgements: Mapping[str, float]
    suggestion: str | None  # the kind of suggestion the card offers
    accepted: float  # chance of acceptance, given feedback
    reasons: Sequence[str]  # override reason keys (cards.yaml override_reasons), most frequent first


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    weekday_calls: float  # mean calls a weekday at the busiest EHR
    weekend_calls: float
    topics: Sequence[Topic]


MSC = Topic(
    "msc-evaluation-first",
    0.3,
    {"msc-applies": 0.9, "suspended": 0.1},
    "msc-swap",
    0.25,
    ("msc-done", "patient-declines", "emergent", "not-applicable", "other"),
)
PN = Topic(
    "prior-notification-required",
    0.12,
    {"exempt-medicare-advantage": 0.4, "msc-done": 0.35, "outside-regions": 0.15, "established-spine-care": 0.1},
    None,
    0.1,
    ("pn-filed", "not-applicable", "other"),
)
SERVICES = (
    Service("lbp-referral-select", "order-select", 40, 5, (MSC, PN)),
    Service(
        "lbp-referral-sign",
        "order-sign",
        35,
        4,
        (
            MSC,
            Topic(
                "opioid-sparing-alternatives",
                0.2,
                {"opioid-sparing": 0.7, "long-term-opioid": 0.3},
                "pt-referral",
                0.3,
                ("patient-declines", "not-applicable", "other"),
            ),
        ),
    ),
    Service(
        "lbp-patient-view",
        "patient-view",
        120,
        15,
        (
            Topic(
                "physical-therapy-first-line",
                0.08,
                {"pt-first-line": 1.0},
                "pt-referral",
                0.45,
                ("patient-declines", "not-applicable", "other"),
            ),
            Topic("red-flag-review", 0.01, {"red-flags": 1.0}, None, 0.5, ("ruled-out", "other")),
        ),
    ),
    Service(
        "lbp-appointment-book",
        "appointment-book",
        10,
        1,
        (
            Topic(
                "prior-notification-required",
                0.5,
                {"pn-missing": 0.8, "pn-unchecked": 0.2},
                None,
                0.2,
                ("pn-filed", "other"),
            ),
            Topic(
                "msc-evaluation-first",
                0.3,
                {"pn-missing": 0.6, "pn-on-file": 0.4},
                None,
                0.2,
                ("msc-done", "exempt-coverage", "other"),
            ),
        ),
    ),
)
COMMENTS = (
    "Patient already had an MSC evaluation at an outside clinic last month.",
    "The card fired for a chronic, stable patient: not helpful here.",
    "Surgeon's office says they filed the Prior Notification by fax.",
    "Patient prefers to see the surgeon directly; discussed the MSC option.",
    "Card says Medicare Advantage is exempt but this patient has a commercial plan.",
    "Too many cards on one order; please combine.",
    "The PT referral suggestion picked the wrong location.",
    "Emergency ruled out in the ED yesterday.",
)
FEEDBACK_SHARE = 0.6  # of cards at the EHRs that send feedback
COMMENT_SHARE = 0.12  # of overrides
VERSION_3_MSC_ACCEPTED = 0.4  # the new MSC wording of the third version is accepted more often


class DemoRefused(Exception):
    """The database holds cards from a real EHR: demo data would mix with them."""


def fill(storage: Storage, last_day: date, reasons: Mapping[str, Mapping[str, str]], key: str) -> tuple[int, int]:
    """Write the year ending on `last_day`; returns (cards, feedback entries). `reasons`: cards.yaml
    override_reasons; `key`: what pseudonymises the demo clinicians."""
    with unavailable("The database cannot be reached."), storage.engine.begin() as connection:
        if holds_real_cards(connection):
            raise DemoRefused(
                "the database already holds issued cards from real EHRs; demo data is only for an empty one"
            )
        remove_demo_data(connection)
    rng = random.Random(SEED)
    first_day = last_day - timedelta(days=DAYS - 1)
    cards = answered = 0
    for index in range(DAYS):
        day = first_day + timedelta(days=index)
        calls = calls_of(rng, day, index, key)
        rows = [row for call in calls for card in call.cards if (row := feedback_row(rng, card, call, reasons))]
        storage.record_hook_calls(calls)
        if rows:
            with storage.engine.begin() as connection:
                connection.execute(insert(feedback), rows)
        cards += sum(len(call.cards) for call in calls)
        answered += len(rows)
    return cards, answered


def remove_demo_data(connection: Any) -> None:
    for table in (issued_cards, feedback, card_days, call_days, clinician_days):
        connection.execute(delete(table).where(table.c.issuer.endswith(DEMO_ISSUER_SUFFIX)))


def version_on(index: int) -> str:
    return [version for version, first in VERSIONS if index >= first][-1]


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: means here are small (at most a few hundred, split into steps of 30)."""
    total = 0
    while mean > 0:
        step, mean = min(mean, 30.0), mean - 30.0
        limit, k, p = math.exp(-step), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                break
            k += 1
        total += k
    return total


def calls_of(rng: random.Random, day: date, index: int, key: str) -> list[HookCall]:
    version = version_on(index)
    weekend = day.weekday() >= 5
    calls = []
    for ehr in EHRS:
        clinicians = [
            clinician_pseudonym(key, ehr.issuer, ehr.tenant, f"Practitioner/demo-{n}")
            for n in range(CLINICIANS_PER_EHR)
        ]
        for service in SERVICES:
            mean = (service.weekend_calls if weekend else service.weekday_calls) * ehr.volume
            for _ in range(poisson(rng, mean)):
                at = datetime.combine(day, time(13), UTC) + timedelta(seconds=rng.uniform(0, 10 * 3600))
                clinician = clinicians[min(int(rng.expovariate(1 / 15)), CLINICIANS_PER_EHR - 1)]
                cards = tuple(
                    card(rng, service, topic, version, at, ehr, clinician)
                    for topic in service.topics
                    if rng.random() < topic.per_call and not stopped(service, topic, index)
                )
                calls.append(HookCall(service.id, service.hook, version, at, ehr.issuer, ehr.tenant, clinician, cards))
    return calls


def stopped(service: Service, topic: Topic, index: int) -> bool:
    return (service.id, topic.topic) == STOPPED_TOPIC and index >= STOPS_ON_DAY


def card(
    rng: random.Random, service: Service, topic: Topic, version: str, at: datetime, ehr: Ehr, clinician: str | None
) -> IssuedCard:
    judgement = rng.choices(list(topic.judgements), weights=list(topic.judgements.values()))[0]
    kinds = {str(uuid.UUID(int=rng.getrandbits(128), version=4)): topic.suggestion} if topic.suggestion else {}
    return IssuedCard(
        card_uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        service_id=service.id,
        topic=topic.topic,
        content_version=version,
        issued_at=at,
        hook=service.hook,
        issuer=ehr.issuer,
        tenant=ehr.tenant,
        judgement=judgement,
        clinician_key=clinician,
        clinician_key_id="demo" if clinician else None,
        suggestion_kinds=kinds,
    )


def feedback_row(
    rng: random.Random, card: IssuedCard, call: HookCall, reasons: Mapping[str, Mapping[str, str]]
) -> dict[str, Any] | None:
    ehr = next(e for e in EHRS if e.issuer == call.issuer)
    if not ehr.sends_feedback or rng.random() >= FEEDBACK_SHARE:
        return None
    topic = next(t for s in SERVICES if s.id == card.service_id for t in s.topics if t.topic == card.topic)
    chance = topic.accepted
    if topic is MSC and card.content_version == VERSIONS[-1][0]:
        chance = VERSION_3_MSC_ACCEPTED
    accepted = rng.random() < chance
    at = card.issued_at + timedelta(seconds=seconds_to_act(rng))
    reason = reasons.get(rng.choices(topic.reasons, weights=range(len(topic.reasons), 0, -1))[0], {})
    kinds = card.suggestion_kinds or {}
    return {
        "service_id": card.service_id,
        "card_uuid": card.card_uuid,
        "topic": card.topic,
        "outcome": "accepted" if accepted else "overridden",
        "accepted_suggestions": list(kinds) if accepted else [],
        "override_code": None if accepted else reason.get("code"),
        "override_system": None if accepted else reason.get("system"),
        "override_display": None if accepted else reason.get("display"),
        "user_comment": rng.choice(COMMENTS) if not accepted and rng.random() < COMMENT_SHARE else None,
        "outcome_timestamp": at,
        "received_at": at + timedelta(seconds=2),
        "issuer": call.issuer,
        "tenant": call.tenant,
        "accepted_kind": next(iter(kinds.values()), None) if accepted else None,
        "card_issued_at": card.issued_at,
        "content_version": card.content_version,
        "comment_read_at": None,
        "first_of_card": True,  # one feedback entry per card here
        "first_of_outcome": True,
    }


def seconds_to_act(rng: random.Random) -> float:
    """Most act at once, some after minutes, a few the next days."""
    roll = rng.random()
    if roll < 0.7:
        return rng.expovariate(1 / 40)
    if roll < 0.9:
        return rng.uniform(60, 3 * 3600)
    return rng.uniform(3 * 3600, 5 * 86400)
