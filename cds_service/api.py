"""The CDS Hooks HTTP API: discovery and service calls. No clinical rule lives here."""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from cards.render import CONTENT_VERSION_EXTENSION, RenderContext, render_cards
from cds_service.content import Content
from cds_service.errors import BadRequest, UnsupportedMediaType, log
from cds_service.prefetch import gather_record
from cds_service.registry import Registry
from cds_service.validation import validate_request
from hooks.facts import build_facts
from hooks.service import HookInput, ServiceDefinition

blueprint = Blueprint("cds_hooks", __name__)


def registry() -> Registry:
    return current_app.extensions["lbp_registry"]


def content() -> Content:
    return current_app.extensions["lbp_content"]


@blueprint.get("/cds-services")
def discovery() -> Response:
    # The content version tells which wording and code lists this service answers with right now.
    return jsonify({**registry().discovery(), "extension": {CONTENT_VERSION_EXTENSION: content().version}})


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    service = registry().get(service_id)
    body = read_json_body()
    return jsonify(answer(service, body, current_app.extensions["lbp_today"]()))


def answer(service: ServiceDefinition, body: Any, today: date) -> dict[str, Any]:
    """The CDS Hooks response to a call (also what the /preview page shows for a bundled example)."""
    started = time.perf_counter()
    validate_request(service, body)
    hook_input = HookInput(body["context"])
    current = content()
    cards: list[dict[str, Any]] = []
    if service.relevant(hook_input, current.knowledge):
        record = gather_record(service, body)
        facts = build_facts(record, current.knowledge, today)
        decisions = service.decide(hook_input, facts, current.knowledge)
        region = current.directory.region_for(facts.postal_code)
        ctx = RenderContext(current, public_base_url(), body["context"]["patientId"], region)
        cards = render_cards(decisions, ctx)
    log.info(
        "hook call service=%s hookInstance=%s cards=%s ms=%.1f",
        service.id,
        body["hookInstance"],
        [c["source"]["topic"]["code"] for c in cards],
        (time.perf_counter() - started) * 1000,
    )
    return {"cards": cards}


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
