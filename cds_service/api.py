"""The CDS Hooks HTTP API: discovery, service calls and feedback. No clinical rule lives here."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from cards.render import CONTENT_VERSION_EXTENSION, RenderContext, render_cards
from cds_service import metrics
from cds_service.auth import Caller, JwtVerifier
from cds_service.content import Content
from cds_service.errors import BadRequest, ClientError, PrefetchUnavailable, UnsupportedMediaType, log
from cds_service.feedback import parse_feedback
from cds_service.prefetch import Gathered, gather
from cds_service.registry import Registry
from cds_service.storage import IssuedCard, Storage
from cds_service.validation import validate_request
from hooks.decisions import Decision, keys_that_matter
from hooks.facts import build_facts
from hooks.service import HookInput, ServiceDefinition

blueprint = Blueprint("cds_hooks", __name__)


def registry() -> Registry:
    return current_app.extensions["lbp_registry"]


def content() -> Content:
    return current_app.extensions["lbp_content"]


def storage() -> Storage:
    return current_app.extensions["lbp_storage"]


@blueprint.get("/cds-services")
def discovery() -> Response:
    # The content version tells which wording and code lists this service answers with right now.
    return jsonify({**registry().discovery(), "extension": {CONTENT_VERSION_EXTENSION: content().version}})


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    service = registry().get(service_id)
    started = time.perf_counter()
    call = {"event": "hook_call", "service": service.id, "status": 500, "topics": [], "fetched": {}, "missing": []}
    try:
        authenticate()
        body = read_json_body()
        response = answer(service, body, current_app.extensions["lbp_today"](), call)
        call["status"] = 200
    except ClientError as error:
        call["status"] = error.status
        raise
    finally:
        seconds = time.perf_counter() - started
        call["ms"] = round(seconds * 1000, 2)
        metrics.HOOK_SECONDS.labels(service=service.id, status=call["status"]).observe(seconds)
        log.info("hook call", extra=call)
    for topic in call["topics"]:
        metrics.CARDS_ISSUED.labels(service=service.id, topic=topic).inc()
    remember_issued(service.id, response["cards"])
    return jsonify(response)


def answer(service: ServiceDefinition, body: Any, today: date, call: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CDS Hooks response to a call (also what the /preview page shows for a bundled example).

    Validates the request, gathers the patient's data, lets the service decide and renders the cards;
    notes in `call` what happened, for the log line.
    """
    call = {} if call is None else call
    validate_request(service, body)
    call["hookInstance"] = body["hookInstance"]
    hook_input = HookInput(body["context"])
    current = content()
    if not service.relevant(hook_input, current.knowledge):
        return {"cards": []}
    gathered = gather(service, body, current_app.extensions["lbp_fetcher"])
    call["fetched"] = {key: round(ms, 1) for key, ms in gathered.fetched.items()}
    call["missing"] = sorted(gathered.missing)
    facts = build_facts(gathered.record, current.knowledge, today)
    decisions = service.decide(hook_input, facts, current.knowledge)
    refuse_if_unsafe(service, decisions, gathered)
    region = current.directory.region_for(facts.postal_code)
    cards = render_cards(decisions, RenderContext(current, public_base_url(), body["context"]["patientId"], region))
    call["topics"] = [card["source"]["topic"]["code"] for card in cards]
    return {"cards": cards}


def refuse_if_unsafe(service: ServiceDefinition, decisions: list[Decision], gathered: Gathered) -> None:
    """412 when data that could not be had could make a card wrong, or leaves nothing to decide on."""
    matter = keys_that_matter(decisions, set(gathered.missing))
    if matter:
        reasons = "; ".join(f"{key} ({service.prefetch[key]}): {gathered.missing[key]}" for key in sorted(matter))
        raise PrefetchUnavailable(
            f"Data this service needs could not be obtained: {reasons}. "
            "Prefetch these keys, or send a fhirServer this service may call with fhirAuthorization."
        )


@blueprint.post("/cds-services/<service_id>/feedback")
def receive_feedback(service_id: str) -> Response:
    """Answer 200 only once every entry is committed: the EHR retries on anything else."""
    service = registry().get(service_id)
    caller = authenticate()
    body = read_json_body()
    entries = parse_feedback(
        body,
        service.id,
        received_at=datetime.now(UTC),
        issuer=caller.issuer if caller else None,
        tenant=caller.tenant if caller else None,
    )
    new = storage().record_feedback(entries)
    for topic, outcome in new:
        metrics.FEEDBACK.labels(service=service.id, topic=topic or "unknown", outcome=outcome).inc()
    log.info(
        "feedback stored",
        extra={"event": "feedback", "service": service.id, "entries": len(entries), "new": len(new)},
    )
    return jsonify({})


def authenticate() -> Caller | None:
    """The verified caller, or None when JWTs are not required (development)."""
    verifier: JwtVerifier | None = current_app.extensions["lbp_jwt_verifier"]
    if verifier is None:
        return None
    return verifier.verify(request.headers.get("Authorization"), audience=public_base_url() + request.path)


def remember_issued(service_id: str, cards: list[dict[str, Any]]) -> None:
    """Record which topic each card uuid had, for feedback reports; in the background, never in the way.

    The content version is the one the card carries: content may be reloaded while a call runs.
    """
    issued_at = datetime.now(UTC)
    issued = [
        IssuedCard(
            card["uuid"],
            service_id,
            card["source"]["topic"]["code"],
            card["source"]["extension"][CONTENT_VERSION_EXTENSION],
            issued_at,
        )
        for card in cards
    ]
    current_app.extensions["lbp_issued_cards"].record(issued)


def read_json_body() -> Any:
    if not request.mimetype or not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        raise UnsupportedMediaType(
            f"Send the request as application/json (got {request.mimetype or 'no Content-Type'})."
        )
    raw = request.get_data(cache=False)  # enforces the body-size limit (413)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"The request body is not valid JSON: {error}") from None


def public_base_url() -> str:
    """Where this service's pages are reachable: configured, else as the request was addressed."""
    configured = current_app.config["LBP_SETTINGS"].public_base_url
    return configured or request.host_url.rstrip("/")
