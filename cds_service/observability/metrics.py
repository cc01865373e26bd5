"""Prometheus metrics. Under the server every worker writes its own files in PROMETHEUS_MULTIPROC_DIR
(set by cds_service/web/server.py) and /metrics adds them up; in a single process the default registry serves."""

from __future__ import annotations

import os
from functools import cache

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

# In multiprocess mode a metric without labels writes its file when defined (below): the folder must exist
# in every process that imports this, a command such as `lbp-cds migrate` too, not only under the server.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

HOOK_SECONDS = Histogram(
    "lbp_hook_call_seconds",
    "Service time of a hook call, by service and HTTP status.",
    ["service", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CARDS_ISSUED = Counter("lbp_cards_issued_total", "Cards answered, by service and topic.", ["service", "topic"])
FHIR_FETCHES = Counter(
    "lbp_fhir_fetches_total",
    "FHIR fetches for prefetch keys the EHR did not satisfy, by key and outcome.",
    ["key", "outcome"],
)
RESOURCES_SET_ASIDE = Counter(
    "lbp_resources_set_aside_total",
    "Prefetched or fetched resources not shaped as FHIR R4 says, never read by the rules, by key and source.",
    ["key", "source"],
)
JWT_REJECTIONS = Counter("lbp_jwt_rejections_total", "JWTs refused (401), by reason.", ["reason"])
JWT_REPLAY_LOCAL = Counter(
    "lbp_jwt_replay_local_total",
    "JWTs accepted while the shared replay store was unreachable, checked against the worker's own memory only.",
)
FEEDBACK = Counter(
    "lbp_feedback_total", "Feedback entries stored, by service, topic and outcome.", ["service", "topic", "outcome"]
)

# The analytics alarms (issue 19), evaluated when /metrics is scraped (at most every ALARM_REFRESH_SECONDS per
# worker): 1 while the alarm holds on the latest day, else 0. Under gunicorn the most recent value any live
# worker set is reported.
TOPIC_STOPPED = Gauge(
    "lbp_analytics_topic_stopped",
    "1 while a card topic has stopped firing (zero cards on days whose hook calls make that improbable).",
    ["service", "topic"],
    multiprocess_mode="livemostrecent",
)
TOPIC_OUT_OF_CONTROL = Gauge(
    "lbp_analytics_topic_out_of_control",
    "1 while a card topic's daily rate is beyond its 3-sigma limits, or 8 days in a row on one side of its centre.",
    ["service", "topic", "direction"],
    multiprocess_mode="livemostrecent",
)
ALARMS_EVALUATED = Gauge(
    "lbp_analytics_alarms_evaluated_timestamp_seconds",
    "When the analytics alarms were last evaluated (Unix time).",
    multiprocess_mode="livemostrecent",
)


# The labelled series a hook call updates, looked up once per label set: `labels()` takes the metric's lock
# and builds its key on every call, so the hot path keeps the series it has already met.
@cache
def hook_seconds(service: str, status: int) -> Histogram:
    return HOOK_SECONDS.labels(service=service, status=status)


@cache
def cards_issued(service: str, topic: str) -> Counter:
    return CARDS_ISSUED.labels(service=service, topic=topic)


def exposition() -> tuple[bytes, str]:
    """The text exposition format: all workers' metrics under the server, this process's otherwise."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE
    return generate_latest(REGISTRY), CONTENT_TYPE


SHAPES_REPAIRED = Counter(
    "lbp_shapes_repaired_total",
    "Elements FHIR makes arrays that arrived as one object and were read as an array of one, by source "
    "(context, prefetch, fetch) and element name.",
    ["source", "element"],
)
