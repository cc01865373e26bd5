"""Gathering the patient's FHIR data for a hook call: prefetch first, else the EHR's FHIR server.

Per CDS Hooks 2.0.1: a key may be absent (not satisfied), null (no data: do not
re-query), a Bundle or a resource. An OperationOutcome, or anything that is not a
FHIR resource (EHRs have sent HTML error pages), means it must be fetched.

Then references, resolved one way: the rules say which referenced resources they would read
(hooks.facts.references_needed: reason Conditions, Medications, the practitioners of visits and
orders); those neither contained nor gathered are fetched by id in a second round, by type, within
what is left of the call's budget. What cannot be had is reported per kind (referencedConditions…).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cds_service.pipeline.fhir_client import FhirFetcher, is_resource
from hooks import fhir
from hooks.decisions import REFERENCED_DATA
from hooks.facts import PatientRecord
from hooks.service import BY_REFERENCE_KEYS, ServiceDefinition

IDS_PER_QUERY = 50  # a GET URL stays well under common server limits
# Which referenced resources the rules would read that a record does not hold ('Type/id').
Needs = Callable[[PatientRecord], set[str]]

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


def gather(
    service: ServiceDefinition, body: Mapping[str, Any], fetcher: FhirFetcher | None, needs: Needs | None = None
) -> Gathered:
    prefetch = body.get("prefetch") or {}
    resources: list[fhir.Resource] = []
    to_fetch = []
    for key in service.prefetch:
        value = prefetch.get(key)
        if key in prefetch and value is None:
            continue  # the EHR has no data for this template
        if usable(value):
            resources.extend(fhir.bundle_resources(value))
        elif key not in BY_REFERENCE_KEYS:
            to_fetch.append(key)
    gathered = Gathered()
    session = FetchSession(body, fetcher, gathered)
    if to_fetch:
        resources += session.by_template(service, to_fetch)
    gathered.record = PatientRecord.from_resources(resources)
    if needs is not None:
        wanted = needs(gathered.record)
        if wanted:
            found, unresolved = session.by_reference(wanted)
            gathered.record = PatientRecord.from_resources(resources + found, unresolved)
    return gathered


@dataclass
class FetchSession:
    """The FHIR fetching of one call: one server, one token, one budget shared by its rounds."""

    body: Mapping[str, Any]
    fetcher: FhirFetcher | None
    out: Gathered
    deadline: float | None = None

    def unavailable(self) -> str | None:
        """Why nothing can be fetched for this call, or None when it can."""
        server = self.body.get("fhirServer")
        if not server:
            return "not prefetched, and the request has no fhirServer"
        if self.fetcher is None or not self.fetcher.allows(server):
            return "not prefetched, and fhirServer is not on this service's allow-list"
        return None

    def fetch(self, queries: Mapping[str, tuple[str, str]]) -> list[Any]:
        assert self.fetcher is not None
        if self.deadline is None:
            self.deadline = self.fetcher.deadline()
        token = (self.body.get("fhirAuthorization") or {}).get("access_token")
        return self.fetcher.fetch_all(self.body["fhirServer"], token, queries, self.deadline)

    def by_template(self, service: ServiceDefinition, keys: list[str]) -> list[fhir.Resource]:
        why = self.unavailable()
        if why is not None:
            self.out.missing.update({k: why for k in keys})
            return []
        queries = {}
        for key in keys:
            rendered = render_template(service.prefetch[key], self.body["context"])
            if rendered is None:
                self.out.missing[key] = "its prefetch template needs a context value the request lacks"
            else:
                queries[key] = (service.prefetch[key], rendered)
        resources: list[fhir.Resource] = []
        for outcome in self.fetch(queries):
            self.out.fetched[outcome.key] = outcome.ms
            if outcome.resources is None:
                self.out.missing[outcome.key] = outcome.problem or "could not be fetched"
            else:
                resources.extend(outcome.resources)
        return resources

    def by_reference(self, wanted: set[str]) -> tuple[list[fhir.Resource], set[str]]:
        """Fetch referenced resources by id, one search per type (and a Practitioner's roles with it).

        Returns what was found and the keys that could not be had. A key the server does not know is
        simply absent: a dangling reference is no data, not missing data.
        """
        why = self.unavailable()
        if why is not None:
            self.miss(wanted, why)
            return [], set(wanted)
        queries = reference_queries(wanted)
        found: list[fhir.Resource] = []
        unresolved: set[str] = set()
        for outcome in self.fetch({name: (template, query) for name, (template, query, _keys) in queries.items()}):
            keys = queries[outcome.key][2]
            label = REFERENCED_DATA[queries[outcome.key][0].split("?")[0]]
            self.out.fetched[label] = max(self.out.fetched.get(label, 0.0), outcome.ms)
            if outcome.resources is None:
                unresolved |= keys
                self.miss(keys, outcome.problem or "could not be fetched")
            else:
                found.extend(outcome.resources)
        return found, unresolved

    def miss(self, keys: set[str], why: str) -> None:
        for kind in sorted({REFERENCED_DATA[key.split("/")[0]] for key in keys}):
            named = sorted(k for k in keys if REFERENCED_DATA[k.split("/")[0]] == kind)
            shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
            self.out.missing[kind] = f"{shown}: {why}"


def reference_queries(wanted: set[str]) -> dict[str, tuple[str, str, set[str]]]:
    """name → (template for the log, rendered query, the keys it resolves), by type in chunks of ids.

    A Practitioner is fetched with its PractitionerRoles (PractitionerRole?practitioner=…): the
    specialty is on the role.
    """
    by_type: dict[str, list[str]] = {}
    for key in sorted(wanted):
        kind, _, rid = key.partition("/")
        by_type.setdefault(kind, []).append(rid)
    queries: dict[str, tuple[str, str, set[str]]] = {}
    for kind, ids in by_type.items():
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[start : start + IDS_PER_QUERY]
            keys = {f"{kind}/{rid}" for rid in chunk}
            listed = ",".join(quote(rid, safe="") for rid in chunk)
            queries[f"{REFERENCED_DATA[kind]}:{kind}:{start}"] = (
                f"{kind}?_id={{referenced}}",
                f"{kind}?_id={listed}",
                keys,
            )
            if kind == "Practitioner":
                targets = ",".join(quote(f"Practitioner/{rid}", safe="/") for rid in chunk)
                queries[f"{REFERENCED_DATA[kind]}:PractitionerRole-of:{start}"] = (
                    "PractitionerRole?practitioner={referenced}",
                    f"PractitionerRole?practitioner={targets}",
                    keys,
                )
    return queries
