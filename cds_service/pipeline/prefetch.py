"""Gathering the patient's FHIR data for a hook call: prefetch first, else the EHR's FHIR server.

Per CDS Hooks 2.0.1: a key may be absent (not satisfied), null (no data: do not
re-query), a Bundle or a resource. An OperationOutcome, or anything that is not a
FHIR resource (EHRs have sent HTML error pages, Bundles whose `entry` is not an
array), means it must be fetched.

A resource (prefetched or fetched) whose elements the rules read are not shaped as FHIR R4 says
(pipeline/schemas/fhir-shapes.schema.json) is set aside: never read by the rules, logged with where
and what kind of problem (never its values) and counted; its key then counts as incompletely had,
so a card that data could change is refused with 412 rather than guessed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cds_service.observability import metrics
from cds_service.pipeline.fhir_client import FhirFetcher, is_resource
from cds_service.pipeline.validation import expectation, format_path, is_shaped, log_path, shape_of, shape_problems
from hooks import fhir
from hooks.facts import PatientRecord
from hooks.service import ServiceDefinition

log = logging.getLogger("lbp_cds.prefetch")
TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


@dataclass
class Gathered:
    record: PatientRecord = field(default_factory=PatientRecord)
    missing: dict[str, str] = field(default_factory=dict)  # key → why it could not be had
    fetched: dict[str, float] = field(default_factory=dict)  # key → milliseconds


def usable(value: Any) -> bool:
    """A FHIR resource other than an OperationOutcome; a Bundle only when its entries can be read."""
    if not is_resource(value) or value["resourceType"] == "OperationOutcome":
        return False
    return value["resourceType"] != "Bundle" or is_shaped(value)


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """A prefetch template with its CDS Hooks 2.0 tokens filled in; None if one has no value."""
    failed = False

    def value(match: re.Match[str]) -> str:
        nonlocal failed
        token = match.group(1)
        found: Any = None
        if token.startswith("context."):
            found = context.get(token.removeprefix("context."))
        elif token in USER_TOKENS:
            kind, _, user_id = str(context.get("userId", "")).partition("/")
            found = user_id if kind == USER_TOKENS[token] else None
        if not isinstance(found, str) or not found:
            failed = True
            return ""
        return quote(found, safe="")

    rendered = TOKEN.sub(value, template)
    return None if failed else rendered


def gather(service: ServiceDefinition, body: Mapping[str, Any], fetcher: FhirFetcher | None) -> Gathered:
    prefetch = body.get("prefetch") or {}
    resources: list[fhir.Resource] = []
    to_fetch = []
    gathered = Gathered()
    for key in service.prefetch:
        value = prefetch.get(key)
        if key in prefetch and value is None:
            continue  # the EHR has no data for this template
        if usable(value):
            resources += readable(key, "prefetch", fhir.bundle_resources(value), gathered)
        else:
            to_fetch.append(key)
    if to_fetch:
        resources += fetch_missing(service, body, fetcher, to_fetch, gathered)
    gathered.record = PatientRecord.from_resources(resources)
    return gathered


def readable(key: str, source: str, resources: Iterable[fhir.Resource], out: Gathered) -> list[fhir.Resource]:
    """The resources shaped as FHIR says; the others are set aside, logged, counted, and make `key` incomplete."""
    kept: list[fhir.Resource] = []
    aside = 0
    first = ""
    for index, resource in enumerate(resources):
        if is_shaped(resource):
            kept.append(resource)
            continue
        aside += 1
        problems = shape_problems(resource)
        kind = shape_of(resource)
        log.warning(
            "%s resource set aside: key=%s entry=%s type=%s problems=%s",
            source,
            key,
            index,
            kind,
            "; ".join(f"{log_path(p.absolute_path)} ({p.validator})" for p in problems),
            extra={"event": "resource_set_aside", "key": key, "source": source, "resource_type": kind},
        )
        metrics.RESOURCES_SET_ASIDE.labels(key=key, source=source).inc()
        if not first and problems:
            first = f"entry {index} ({kind}) {format_path(problems[0].absolute_path)}: {expectation(problems[0])}"
    if aside:
        out.missing[key] = (
            f"{aside} resource(s) not shaped as FHIR R4 were set aside (the first: {first})"
            if first
            else f"{aside} resource(s) not shaped as FHIR R4 were set aside"
        )
    return kept


def fetch_missing(
    service: ServiceDefinition, body: Mapping[str, Any], fetcher: FhirFetcher | None, keys: list[str], out: Gathered
) -> list[fhir.Resource]:
    server = body.get("fhirServer")
    if not server:
        out.missing.update({k: "not prefetched, and the request has no fhirServer" for k in keys})
        return []
    if fetcher is None or not fetcher.allows(server):
        out.missing.update({k: "not prefetched, and fhirServer is not on this service's allow-list" for k in keys})
        return []
    queries = {}
    for key in keys:
        rendered = render_template(service.prefetch[key], body["context"])
        if rendered is None:
            out.missing[key] = "its prefetch template needs a context value the request lacks"
        else:
            queries[key] = (service.prefetch[key], rendered)
    token = (body.get("fhirAuthorization") or {}).get("access_token")
    resources: list[fhir.Resource] = []
    for outcome in fetcher.fetch_all(server, token, queries):
        out.fetched[outcome.key] = outcome.ms
        if outcome.resources is None:
            out.missing[outcome.key] = outcome.problem or "could not be fetched"
        else:
            resources += readable(outcome.key, "fetch", outcome.resources, out)
    return resources
