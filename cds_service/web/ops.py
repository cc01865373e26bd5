"""Operations endpoints: liveness, readiness and Prometheus metrics, for load balancers and Kubernetes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from cds_service import version
from cds_service.observability import metrics
from cds_service.wiring import current_services

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process is up and answering; with the release it runs (one version, from pyproject.toml)."""
    return jsonify({"status": "ok", "version": version()})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready for traffic: guideline content loaded and valid, and the database reachable and migrated."""
    services = current_services()
    content = services.content.current
    checks = {
        "content": "ok" if content is not None else "not loaded",
        "database": services.storage.health(),
    }
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
    if content is not None:
        body["contentVersion"] = content.version
    return jsonify(body), 200 if ready else 503


@blueprint.get("/metrics")
def prometheus_metrics() -> Response:
    payload, content_type = metrics.exposition()
    return Response(payload, mimetype=content_type.split(";")[0], content_type=content_type)
