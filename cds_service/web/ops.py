"""Operations endpoints: liveness, readiness and Prometheus metrics, for load balancers and Kubernetes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from cds_service import version
from cds_service.observability import metrics
from cds_service.web.auth import RedisReplayStore
from cds_service.wiring import current_services

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process is up and answering; with the release it runs (one version, from pyproject.toml)."""
    return jsonify({"status": "ok", "version": version()})


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready for all traffic (200) or not (503), with every check and what still works.

    Ready means the content is loaded, the database answers with its schema at this release's revision
    and, with JWTs, the replay store answers. During a database outage the replica is not ready (503,
    naming the database) although hook calls are still answered (`hookCalls`): feedback is not.
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
        if isinstance(guard.shared, RedisReplayStore) and not down:
            down = not guard.shared.reachable()  # asked now: hook calls have not necessarily failed yet
        checks["replay"] = guard.status(down)
        replay_serving = not down or guard.outage == "local"
    serving = content is not None and checks["database"] in ("ok", "unreachable") and replay_serving
    ready = serving and all(value == "ok" for value in checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
    if not ready:
        body["hookCalls"] = "answered" if serving else "refused"
    if content is not None:
        body["contentVersion"] = content.version
    return jsonify(body), 200 if ready else 503


@blueprint.get("/metrics")
def prometheus_metrics() -> Response:
    payload, content_type = metrics.exposition()
    return Response(payload, mimetype=content_type.split(";")[0], content_type=content_type)
