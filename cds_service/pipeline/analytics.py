"""What analytics records of a hook call, without PHI: per card the judgement it rests on and the kinds of its
suggestions; per call the EHR and a keyed pseudonym of the clinician.

The judgement labels name what the rules decided (hooks/decisions.py, hooks/rules.py), so the dashboard can
tell "the MSC step applies" from "exempt: Medicare Advantage" under the same card topic.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cards.model import sorted_json
from cds_service.content.loader import Content
from cds_service.pipeline.call import CallResult
from cds_service.storage.database import HookCall, IssuedCard
from hooks.decisions import (
    AT_BOOKING,
    AT_BOOKING_UNCHECKED,
    LONG_TERM_OPIOID,
    MSC_EVALUATION_FIRST,
    OPIOID_SPARING_ALTERNATIVES,
    PHYSICAL_THERAPY_FIRST_LINE,
    PRIOR_NOTIFICATION_REQUIRED,
    RED_FLAG_REVIEW,
    Decision,
)

# Why a referral may proceed (a cards.yaml `bases` key) → its judgement label.
BASIS_JUDGEMENTS = {
    "medicare-advantage": "exempt-medicare-advantage",
    "msc-done": "msc-done",
    "suspended": "suspended",
    "no-msc-access": "outside-regions",
    "established-spine-care": "established-spine-care",
    "after-lumbar-surgery": "after-lumbar-surgery",
}
OTHER_TOPICS = {
    PHYSICAL_THERAPY_FIRST_LINE: "pt-first-line",
    RED_FLAG_REVIEW: "red-flags",
    OPIOID_SPARING_ALTERNATIVES: "opioid-sparing",
}


def judgement_of(decision: Decision, decisions: tuple[Decision, ...]) -> str:
    """The judgement a card rests on; `decisions` are the call's others (a booking's PN card beside its MSC card)."""
    if decision.topic == MSC_EVALUATION_FIRST:
        if decision.suspension is not None:
            return "suspended"
        if decision.variant == AT_BOOKING:
            pn_card = any(
                d.topic == PRIOR_NOTIFICATION_REQUIRED and d.appointment is decision.appointment for d in decisions
            )
            return "pn-missing" if pn_card else "pn-on-file"
        return "msc-applies"
    if decision.topic == PRIOR_NOTIFICATION_REQUIRED:
        if decision.variant == AT_BOOKING:
            return "pn-missing"
        if decision.variant == AT_BOOKING_UNCHECKED:
            return "pn-unchecked"
        return BASIS_JUDGEMENTS.get(decision.basis or "", "pn-required")
    if decision.topic == OPIOID_SPARING_ALTERNATIVES and decision.variant == LONG_TERM_OPIOID:
        return "long-term-opioid"
    return OTHER_TOPICS.get(decision.topic, decision.topic)


def suggestion_kind(suggestion: Mapping[str, Any], order_names: Mapping[str, str]) -> str:
    """`pt-referral`, `cbt-referral`…: the orders.yaml order it creates (`order_names`: Content.order_names); one
    that also deletes the draft referral is a swap (`msc-swap`)."""
    actions = suggestion.get("actions", ())
    created = [
        order_names.get(sorted_json(action["resource"].get("code")), "other")
        for action in actions
        if action.get("type") == "create"
    ]
    kind = "+".join(created) or "other"
    if any(action.get("type") == "delete" for action in actions):
        return kind.removesuffix("-referral") + "-swap"
    return kind


def clinician_pseudonym(key: str, issuer: str | None, tenant: str | None, user: str | None) -> str | None:
    """HMAC-SHA256 of the clinician's id within its EHR (the same id in two EHRs is two people); None without one."""
    if not user:
        return None
    message = "\x1f".join((issuer or "", tenant or "", user)).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:32]


def hook_call_record(
    result: CallResult,
    service_id: str,
    hook: str,
    at: datetime,
    content: Content,
    ehr: tuple[str | None, str | None],
    clinician: tuple[str | None, str],
) -> HookCall:
    """The call and its cards as analytics stores them; `clinician` is (pseudonym or None, key id)."""
    pseudonym, key_id = clinician
    issuer, tenant = ehr
    order_names = content.order_names
    cards = tuple(
        IssuedCard(
            card_uuid=card["uuid"],
            service_id=service_id,
            topic=decision.topic,
            content_version=result.content_version,
            issued_at=at,
            hook=hook,
            issuer=issuer,
            tenant=tenant,
            judgement=judgement_of(decision, result.decisions),
            clinician_key=pseudonym,
            clinician_key_id=key_id if pseudonym else None,
            suggestion_kinds={s["uuid"]: suggestion_kind(s, order_names) for s in card.get("suggestions", ())},
        )
        for card, decision in zip(result.cards, result.decisions, strict=True)
    )
    return HookCall(service_id, hook, result.content_version, at, issuer, tenant, pseudonym, cards)
