"""Operations endpoints: liveness, readiness and Prometheus metrics, for load balancers and Kubernetes."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from cds_service import metrics
from cds_service.storage import Storage

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process is up and answering."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready for traffic: guideline content loaded and valid, and the database reachable."""
    content = current_app.extensions.get("lbp_content")
    storage: Storage = current_app.extensions["lbp_storage"]
    checks = {
        "content": "ok" if content is not None else "not loaded",
        "database": "ok" if storage.reachable() else "unreachable",
    }
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if content is not None:
        body["contentVersion"] = content.version
    return jsonify(body), 200 if ready else 503


@blueprint.get("/metrics")
def prometheus_metrics() -> Response:
    payload, content_type = metrics.exposition()
    return Response(payload, mimetype=content_type.split(";")[0], content_type=content_type)
