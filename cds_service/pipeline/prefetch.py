"""Gathering the patient's FHIR data for a hook call: prefetch first, else the EHR's FHIR server.

Per CDS Hooks 2.0.1: a key may be absent (not satisfied), null (no data: do not
re-query), a Bundle or a resource. An OperationOutcome, or anything that is not a
FHIR resource (EHRs have sent HTML error pages), means it must be fetched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cds_service.pipeline.fhir_client import FhirFetcher, is_resource
from hooks import fhir
from hooks.facts import PatientRecord
from hooks.service import ServiceDefinition

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
    return is_resource(value) and value["resourceType"] != "OperationOutcome"


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
    for key in service.prefetch:
        value = prefetch.get(key)
        if key in prefetch and value is None:
            continue  # the EHR has no data for this template
        if usable(value):
            resources.extend(fhir.bundle_resources(value))
        else:
            to_fetch.append(key)
    gathered = Gathered()
    if to_fetch:
        resources += fetch_missing(service, body, fetcher, to_fetch, gathered)
    gathered.record = PatientRecord.from_resources(resources)
    return gathered


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
            resources.extend(outcome.resources)
    return resources
