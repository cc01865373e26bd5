"""The CDS Hooks HTTP API: discovery, service calls and feedback. No clinical rule lives here.

Each route is a thin caller: authenticate, read the body, hand it to the pipeline, then answer, log,
count and record from the typed result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from cards.model import CONTENT_VERSION_EXTENSION
from cds_service.errors import ClientError, PayloadTooLarge, PrefetchUnavailable, UnsupportedMediaType
from cds_service.observability import metrics
from cds_service.pipeline import crd
from cds_service.pipeline.analytics import clinician_pseudonym, hook_call_record
from cds_service.pipeline.call import CallResult, answer_hook
from cds_service.pipeline.feedback import parse_feedback
from cds_service.pipeline.validation import parse_hook_request, parse_json
from cds_service.web.auth import Caller
from cds_service.web.errors import route
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


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    services = current_services()
    service = services.registry.get(service_id)
    started = time.perf_counter()
    try:
        caller = authenticate(services)
        body = read_json_body(services, parse_hook_request)
        result = answer_hook(service, body, services.call_dependencies(public_base_url(services), caller))
    except ClientError as error:
        log_call(service.id, error.status, started, refused=error)
        raise
    except Exception:
        log_call(service.id, 500, started)
        raise
    log_call(service.id, 200, started, result=result)
    for topic in result.topics:
        metrics.cards_issued(service.id, topic).inc()
    record_issued(services, service.id, service.hook, result, caller, body["context"].get("userId"))
    return jsonify(result.response())


def log_call(
    service_id: str,
    status: int,
    started: float,
    result: CallResult | None = None,
    refused: ClientError | None = None,
) -> None:
    """One line per hook call: what was answered, how long it took, which data was fetched or missing."""
    seconds = time.perf_counter() - started
    metrics.hook_seconds(service_id, status).observe(seconds)
    fields: dict[str, Any] = {
        "event": "hook_call",
        "service": service_id,
        "status": status,
        "topics": list(result.topics) if result else [],
        "fetched": dict(result.fetched) if result else {},
        "missing": sorted(result.missing) if result else [],
        "systemActions": len(result.system_actions) if result else 0,
        "ms": round(seconds * 1000, 2),
    }
    if result is not None:
        fields["hookInstance"] = result.hook_instance
    if isinstance(refused, PrefetchUnavailable):
        fields["hookInstance"] = refused.hook_instance
        fields["fetched"], fields["missing"] = refused.fetched, sorted(refused.missing)
    log.info("hook call", extra=fields)


def record_issued(
    services: AppServices, service_id: str, hook: str, result: CallResult, caller: Caller | None, user_id: Any
) -> None:
    """Record the call and its cards for the feedback report and analytics; in the background, never in the way."""
    issuer, tenant = (caller.issuer, caller.tenant) if caller else (None, None)
    key, key_id = services.settings.clinician_key, services.settings.clinician_key_id
    user = user_id if isinstance(user_id, str) and user_id else (caller.subject if caller else None)
    pseudonym = clinician_pseudonym(key.get_secret_value(), issuer, tenant, user) if key else None
    try:
        call = hook_call_record(
            result,
            service_id,
            hook,
            datetime.now(UTC),
            services.current_content(),
            (issuer, tenant),
            (pseudonym, key_id),
        )
    except Exception:  # bookkeeping: never the clinician's problem
        log.exception("hook call not recorded (analytics record could not be made)")
        return
    services.issued_cards.record(call)


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
    if not request.mimetype or not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        raise UnsupportedMediaType("Send the request as application/json (Content-Type).")
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
