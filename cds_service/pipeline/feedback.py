"""Card feedback (CDS Hooks 2.0.1 "Feedback"): validated, then turned into rows to store."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cds_service.errors import BadRequest
from cds_service.pipeline.validation import refuse_deep_nesting, report
from cds_service.storage.database import FeedbackEntry


def parse_feedback(
    body: Any, service_id: str, received_at: datetime, issuer: str | None, tenant: str | None
) -> list[FeedbackEntry]:
    """Raise BadRequest saying what is wrong, else one FeedbackEntry per `feedback[]` item."""
    if not isinstance(body, dict):
        raise BadRequest("The feedback body must be a JSON object with a 'feedback' array.", where="body (type)")
    refuse_deep_nesting(body, "")
    report("feedback.schema.json", body, "", "Invalid CDS Hooks feedback")
    return [entry(index, item, service_id, received_at, issuer, tenant) for index, item in enumerate(body["feedback"])]


def entry(
    index: int,
    item: Mapping[str, Any],
    service_id: str,
    received_at: datetime,
    issuer: str | None,
    tenant: str | None,
) -> FeedbackEntry:
    reason = override_coding(item.get("overrideReason"))
    return FeedbackEntry(
        service_id=service_id,
        card_uuid=item["card"].lower(),
        outcome=item["outcome"],
        accepted_suggestions=tuple(s["id"] for s in item.get("acceptedSuggestions", [])),
        override_code=reason.get("code"),
        override_system=reason.get("system"),
        override_display=reason.get("display"),
        user_comment=(item.get("overrideReason") or {}).get("userComment"),
        outcome_timestamp=parse_timestamp(item["outcomeTimestamp"], f"feedback/{index}/outcomeTimestamp"),
        received_at=received_at,
        issuer=issuer,
        tenant=tenant,
    )


def override_coding(override: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The reason Coding of either shape: 2.0 {reason: Coding, userComment} or a pre-2.0 bare Coding."""
    if not override:
        return {}
    if "code" in override:
        return override
    reason: Mapping[str, Any] = override.get("reason", {})
    return reason


def parse_timestamp(stamp: str, path: str = "outcomeTimestamp") -> datetime:
    """RFC 3339 (already checked by the schema) to an aware UTC datetime; duplicates compare on it.

    Times whose UTC instant falls outside years 1–9999 (9999-12-31T23:59:59-23:59) are refused: no
    datetime, and no database, holds them.
    """
    normalised = stamp.upper()
    if normalised[17:19] == "60":  # a leap second: Python's datetime has none; keep the last instant before it
        normalised = normalised[:17] + "59.999999" + normalised[19:].lstrip(".0123456789")
    if "." in normalised:  # datetime keeps microseconds: drop digits past the sixth
        head, _, rest = normalised.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        normalised = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        return datetime.fromisoformat(normalised).astimezone(UTC)
    except ValueError:
        raise BadRequest(f"{path}: not a real date and time (e.g. 31 February)", where=f"{path} (date)") from None
    except OverflowError:
        raise BadRequest(
            f"{path}: in UTC this instant is outside the years 1 to 9999", where=f"{path} (out of range)"
        ) from None
