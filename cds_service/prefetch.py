"""Gathering the patient's FHIR data for a hook call from the request's prefetch.

Per CDS Hooks 2.0.1: a key may be absent (not satisfied), null (no data: do not
re-query), a Bundle or a resource. An OperationOutcome, or anything that is not a
FHIR resource, means the EHR could not satisfy it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.errors import PrefetchUnavailable
from hooks import fhir
from hooks.facts import PatientRecord
from hooks.service import ServiceDefinition


def usable(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and value["resourceType"] != "OperationOutcome"
    )


def gather_record(service: ServiceDefinition, body: Mapping[str, Any]) -> PatientRecord:
    prefetch = body.get("prefetch") or {}
    resources: list[fhir.Resource] = []
    unsatisfied: list[str] = []
    for key in service.prefetch:
        value = prefetch.get(key)
        if key in prefetch and value is None:
            continue  # the EHR has no data for this template
        if not usable(value):
            unsatisfied.append(key)
            continue
        resources.extend(fhir.bundle_resources(value))
    if unsatisfied:
        raise PrefetchUnavailable(
            "Data this service needs was not prefetched and cannot be fetched: "
            + ", ".join(f"{key} ({service.prefetch[key]})" for key in unsatisfied)
            + ". Send these prefetch keys, or a fhirServer with fhirAuthorization."
        )
    return PatientRecord.from_resources(resources)
