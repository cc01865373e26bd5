"""Operations endpoints: liveness, readiness and Prometheus metrics, for load balancers and Kubernetes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from cds_service.observability import metrics
from cds_service.wiring import current_services

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process is up and answering."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Whether hook calls can be answered (200) or not (503), with every check.

    Hook calls need the content, the database schema at this release's revision (once reachable) and,
    with JWTs, a replay check. A database outage alone does not make a replica unready: hook calls are
    answered all the same (feedback gets 503 with Retry-After), so a balancer that took every replica
    out at once would only turn an outage of feedback into one of every call. It says "degraded".
    """
    services = current_services()
    content = services.content.current
    checks = {
        "content": "ok" if content is not None else "not loaded",
        "database": services.storage.health(),
    }
    replay_serving = True
    if services.jwt_verifier is not None:
        guard = services.jwt_verifier.replay_store
        down = guard.local_since is not None or (guard.name == "database" and checks["database"] == "unreachable")
        checks["replay"] = guard.status(down)
        replay_serving = not down or guard.outage == "local"
    serving = content is not None and checks["database"] in ("ok", "unreachable") and replay_serving
    degraded = any(value != "ok" for value in checks.values())
    body: dict[str, object] = {
        "status": "not ready" if not serving else "degraded" if degraded else "ready",
        "checks": checks,
    }
    if content is not None:
        body["contentVersion"] = content.version
    return jsonify(body), 200 if serving else 503


@blueprint.get("/metrics")
def prometheus_metrics() -> Response:
    payload, content_type = metrics.exposition()
    return Response(payload, mimetype=content_type.split(";")[0], content_type=content_type)
