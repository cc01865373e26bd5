"""The CDS Hooks HTTP API: discovery, service calls and feedback. No clinical rule lives here.

Each route is a thin caller: authenticate, read the body, hand it to the pipeline, then answer. The hook call
itself is answered by web/hook_path.py, in front of Flask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from cards.model import CONTENT_VERSION_EXTENSION
from cds_service.errors import PayloadTooLarge
from cds_service.observability import metrics
from cds_service.pipeline import crd
from cds_service.pipeline.feedback import parse_feedback
from cds_service.pipeline.validation import parse_json
from cds_service.web.auth import Caller
from cds_service.web.errors import route
from cds_service.web.hook_path import require_json
from cds_service.wiring import AppServices, current_services

log = logging.getLogger("lbp_cds")
blueprint = Blueprint("cds_hooks", __name__)


@blueprint.get("/cds-services")
def discovery() -> Response:
    services = current_services()
    content = services.current_content()
    listed = []
    for service, entry in zip(services.registry, services.registry.discovery()["services"], strict=True):
        extension = crd.discovery_extension(service, content.crd)
        listed.append({**entry, "extension": extension} if extension else entry)
    # The content version tells which wording and code lists this service answers with right now.
    return jsonify({"services": listed, "extension": {CONTENT_VERSION_EXTENSION: content.version}})


# Hook calls are answered in front of Flask (web/hook_path.py); the route is held here without a view, for
# OPTIONS preflights, the 405 of other methods and the OpenAPI description.
blueprint.add_url_rule("/cds-services/<service_id>", endpoint="call_service", methods=["POST"])


@blueprint.post("/cds-services/<service_id>/feedback")
def receive_feedback(service_id: str) -> Response:
    """Answer 200 only once every entry is committed: the EHR retries on anything else."""
    services = current_services()
    service = services.registry.get(service_id)
    caller = authenticate(services)
    body = read_json_body(services)
    entries = parse_feedback(
        body,
        service.id,
        received_at=datetime.now(UTC),
        issuer=caller.issuer if caller else None,
        tenant=caller.tenant if caller else None,
    )
    new = services.storage.record_feedback(entries)
    for topic, outcome in new:
        metrics.FEEDBACK.labels(service=service.id, topic=topic or "unknown", outcome=outcome).inc()
    log.info(
        "feedback stored",
        extra={"event": "feedback", "service": service.id, "entries": len(entries), "new": len(new)},
    )
    return jsonify({})


def authenticate(services: AppServices) -> Caller | None:
    """The verified caller, or None when JWTs are not required (development)."""
    if services.jwt_verifier is None:
        return None
    base = public_base_url(services)
    return services.jwt_verifier.verify(
        request.headers.get("Authorization"), audience=base + request.path, endpoint=base + route()
    )


def read_json_body(services: AppServices, parse: Callable[[bytes], Any] = parse_json) -> Any:
    require_json(request.mimetype)
    return parse(read_body(services.settings.max_body_bytes))


def read_body(limit: int) -> bytes:
    """The body, 413 beyond `limit` bytes whatever the transfer encoding.

    Werkzeug refuses a Content-Length over its limit, but a chunked body it silently cuts at the
    limit; so its limit is one byte more than ours (setup.py), and a body that reaches it is refused.
    """
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    return raw


def public_base_url(services: AppServices) -> str:
    """Where this service's pages are reachable: configured, else as the request was addressed."""
    return services.settings.public_base_url or request.host_url.rstrip("/")
