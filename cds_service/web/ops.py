"""Operations endpoints: liveness, readiness and Prometheus metrics, for load balancers and Kubernetes."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify

from cds_service import version
from cds_service.observability import metrics
from cds_service.storage.analytics import ongoing_alarms
from cds_service.web.auth import RedisReplayStore
from cds_service.wiring import current_services

blueprint = Blueprint("ops", __name__)
log = logging.getLogger("lbp_cds")


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
    refresh_analytics_alarms()
    payload, content_type = metrics.exposition()
    return Response(payload, mimetype=content_type.split(";")[0], content_type=content_type)


ALARM_REFRESH_SECONDS = 300.0
_next_alarm_refresh: dict[int, float] = {}  # per app (by id: tests run several in one process)


def refresh_analytics_alarms() -> None:
    """The stopped and out-of-control gauges from the database's daily counts, at most every ALARM_REFRESH_SECONDS
    in this worker; a database that cannot answer leaves the last values (their timestamp says how old)."""
    services = current_services()
    if time.monotonic() < _next_alarm_refresh.get(id(services), 0.0):
        return
    _next_alarm_refresh[id(services)] = time.monotonic() + ALARM_REFRESH_SECONDS
    try:
        ongoing = ongoing_alarms(services.storage, services.clock.today())
    except Exception:  # the metrics page must answer whatever the database does
        log.warning("analytics alarms not evaluated (database unavailable)")
        return
    for (service, topic), found in ongoing.items():
        kinds = {(a.kind, a.direction) for a in found}
        metrics.TOPIC_STOPPED.labels(service=service, topic=topic).set(int(any(k == "stopped" for k, _d in kinds)))
        for direction in ("above", "below"):
            shifted = any(k in ("beyond-limits", "run") and d == direction for k, d in kinds)
            metrics.TOPIC_OUT_OF_CONTROL.labels(service=service, topic=topic, direction=direction).set(int(shifted))
    metrics.ALARMS_EVALUATED.set(time.time())
