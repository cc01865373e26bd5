"""Gathering the patient's FHIR data for a hook call: prefetch first, else the EHR's FHIR server.

Per CDS Hooks 2.0.1: a key may be absent (not satisfied), null (no data: do not
re-query), a Bundle or a resource. An OperationOutcome, or anything that is not a
FHIR resource (EHRs have sent HTML error pages, Bundles whose `entry` is not an
array), means it must be fetched.

Then references, resolved one way: the referenced resources the rules looked up and did not find
(hooks.fhir.References.not_found, noted while the call was judged) are fetched by id in a further
round, by type, within what is left of the call's budget (pipeline/call.py drives the rounds). What
cannot be had is reported per kind (referencedConditions…).

Every resource is decoded into typed data at one boundary (pipeline/decode.py). One whose elements the
rules read are not shaped as FHIR R4 says is set aside: never read by the rules, logged with where and
what kind of problem (never its values) and counted; its key then counts as incompletely had, so a
card that data could change is refused with 412 rather than guessed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgspec

from cds_service.observability import metrics
from cds_service.pipeline.decode import (
    ENVELOPE,
    SearchBundle,
    bundle_resources,
    decode,
    decode_many,
    is_readable_bundle,
    note_repairs,
    typed_resources,
)
from cds_service.pipeline.fhir_client import FhirFetcher, is_resource
from cds_service.pipeline.validation import format_path, log_path
from hooks.model import READ_TYPES, Resource
from hooks.record import REFERENCED_DATA
from hooks.service import BY_REFERENCE_KEYS, ServiceDefinition

IDS_PER_QUERY = 50  # a GET URL stays well under common server limits

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
    resources: list[Resource] = field(default_factory=list)  # typed, as the rules read them
    missing: dict[str, str] = field(default_factory=dict)  # key → why it could not be had
    fetched: dict[str, float] = field(default_factory=dict)  # key → milliseconds
    # Each typed resource's JSON as the EHR sent it (by object identity): CRD coverage information
    # echoes a resource unchanged but for its extension. Resources decoded straight from a prefetched
    # value's text are found in it only when asked for (rarely: a booking's prefetched referral).
    sources: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Prefetched values typed straight from the request's text: key, resources and the entry of each.
    typed_prefetch: list[tuple[str, tuple[Resource, ...], tuple[int, ...] | None]] = field(default_factory=list)
    request_text: bytes | None = None

    def source_of(self, resource: Resource) -> dict[str, Any]:
        """The JSON of a resource this call decoded (the context's, or one gathered), as it was sent."""
        found = self.sources.get(id(resource))
        if found is not None:
            return found
        for key, resources, entries in self.typed_prefetch:
            position = next((i for i, r in enumerate(resources) if r is resource), None)
            if position is not None and self.request_text is not None:
                texts = ENVELOPE.decode(ENVELOPE.decode(self.request_text)["prefetch"])
                value = msgspec.json.decode(texts[key])
                sent: dict[str, Any] = value if entries is None else value["entry"][entries[position]]["resource"]
                return sent
        raise KeyError("a resource this call did not decode")


def usable(value: Any) -> bool:
    """A FHIR resource other than an OperationOutcome; a Bundle only when its entries can be read."""
    if not is_resource(value) or value["resourceType"] == "OperationOutcome":
        return False
    return value["resourceType"] != "Bundle" or is_readable_bundle(value)


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


def gather(service: ServiceDefinition, body: Mapping[str, Any], fetcher: FhirFetcher | None) -> FetchSession:
    """The patient's data by the service's prefetch templates: prefetched, else fetched. The session it
    returns fetches referenced resources in later rounds (pipeline/call.py)."""
    prefetch = body.get("prefetch") or {}
    to_fetch = []
    session = FetchSession(body, fetcher, Gathered(request_text=getattr(body, "text", None)))
    for key in service.prefetch:
        value = prefetch.get(key)
        if isinstance(value, (SearchBundle, Resource)):  # typed as the request was read (validation.py)
            typed, entries = typed_resources(value)
            session.out.resources += typed
            session.out.typed_prefetch.append((key, typed, entries))
            continue
        if key in prefetch and value is None:
            continue  # the EHR has no data for this template
        if usable(value) and isinstance(value, dict):
            session.out.resources += readable(key, "prefetch", bundle_resources(value), session.out)
        elif key not in BY_REFERENCE_KEYS:
            to_fetch.append(key)
    if to_fetch:
        session.out.resources += session.by_template(service, to_fetch)
    return session


def readable(key: str, source: str, resources: Iterable[object], out: Gathered) -> list[Resource]:
    """The resources decoded into typed data; those not shaped as FHIR says are set aside, logged, counted,
    and make `key` incomplete. Resources of types no rule reads are left out."""
    resources = list(resources)
    typed = decode_many(resources)
    if typed is not None:  # all of them read as they are: one call
        out.sources.update(zip(map(id, typed), resources, strict=True))  # type: ignore[arg-type]
        return typed
    kept: list[Resource] = []
    aside = 0
    first = ""
    for index, raw in enumerate(resources):
        decoded = decode(raw)
        if decoded.resource is not None:
            kept.append(decoded.resource)
            out.sources[id(decoded.resource)] = raw  # type: ignore[assignment]
            if decoded.repairs:
                note_repairs(decoded, source, decoded.resource.resource_type)
            continue
        problem = decoded.problem
        if problem is None:
            continue  # a type no rule reads (an OperationOutcome among the search results, an include)
        aside += 1
        kind = raw.get("resourceType") if isinstance(raw, dict) else None
        kind = kind if isinstance(kind, str) and kind in READ_TYPES else "Resource"
        log.warning(
            "%s resource set aside: key=%s entry=%s type=%s problems=%s",
            source,
            key,
            index,
            kind,
            log_path(problem.path),
            extra={"event": "resource_set_aside", "key": key, "source": source, "resource_type": kind},
        )
        metrics.RESOURCES_SET_ASIDE.labels(key=key, source=source).inc()
        if not first:
            first = f"entry {index} ({kind}) {format_path(problem.path)}: {problem.expectation}"
    if aside:
        out.missing[key] = f"{aside} resource(s) not shaped as FHIR R4 were set aside (the first: {first})"
    return kept


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

    def by_template(self, service: ServiceDefinition, keys: list[str]) -> list[Resource]:
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
        resources: list[Resource] = []
        for outcome in self.fetch(queries):
            self.out.fetched[outcome.key] = outcome.ms
            if outcome.resources is None:
                self.out.missing[outcome.key] = outcome.problem or "could not be fetched"
            else:
                resources += readable(outcome.key, "fetch", outcome.resources, self.out)
        return resources

    def by_reference(self, wanted: set[str]) -> tuple[list[Resource], set[str]]:
        """Fetch referenced resources by id, one search per type (and a Practitioner's roles with it).

        Returns what was found and the keys that could not be had. A key the server does not know is
        simply absent: a dangling reference is no data, not missing data.
        """
        why = self.unavailable()
        if why is not None:
            self.miss(wanted, why)
            return [], set(wanted)
        queries = reference_queries(wanted)
        found: list[Resource] = []
        unresolved: set[str] = set()
        for outcome in self.fetch({name: (template, query) for name, (template, query, _keys) in queries.items()}):
            keys = queries[outcome.key][2]
            label = REFERENCED_DATA[queries[outcome.key][0].split("?")[0]]
            self.out.fetched[label] = max(self.out.fetched.get(label, 0.0), outcome.ms)
            if outcome.resources is None:
                unresolved |= keys
                self.miss(keys, outcome.problem or "could not be fetched")
            else:
                found += readable(label, "fetch", outcome.resources, self.out)
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
