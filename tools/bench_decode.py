"""Benchmark (not a test): turning a large prefetch into typed data, msgspec against pydantic-core.

    .venv/bin/python tools/bench_decode.py [--size 10000] [--repeat 15]

The body is tools/bench_http.py's grown record (the baseline patient and `--size` prefetched Conditions,
Encounters, ServiceRequests and Procedures). Printed side by side, best of `--repeat` runs each:

- the reference: the standard library's `json.loads` of the whole body (what the bare-Flask ceiling does);
- lbp-cds's path: msgspec reads the whole request in one pass, the prefetched values straight into
  hooks/model.py's Structs (pipeline/validation.py `parse_hook_request`);
- msgspec from parsed JSON: `json.loads`, then `msgspec.convert` of the resources (the careful path);
- pydantic-core from JSON and from parsed JSON: the same elements declared as pydantic models (frozen,
  strict, the same field types; arrays as lists, which strict mode takes from parsed JSON), validated with a
  TypeAdapter of their tagged union.

This is the measurement behind hooks/model.py's choice of msgspec (docs/developers/index.md, "Typed data").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds_service.pipeline.decode import decode_many  # noqa: E402
from cds_service.pipeline.validation import parse_hook_request  # noqa: E402
from tools.bench_http import grown_request  # noqa: E402


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True)


class Coding(Model):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(Model):
    coding: list[Coding] = []
    text: str | None = None


class Reference(Model):
    reference: str | None = None
    display: str | None = None


class Period(Model):
    start: str | None = None
    end: str | None = None


class Address(Model):
    use: str | None = None
    postalCode: str | None = None


class Patient(Model):
    resourceType: Literal["Patient"]
    id: str | None = None
    birthDate: str | None = None
    address: list[Address] = []


class Condition(Model):
    resourceType: Literal["Condition"]
    id: str | None = None
    code: CodeableConcept | None = None
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    onsetDateTime: str | None = None
    recordedDate: str | None = None


class Encounter(Model):
    resourceType: Literal["Encounter"]
    id: str | None = None
    status: str | None = None
    serviceType: CodeableConcept | None = None
    type: list[CodeableConcept] = []
    period: Period | None = None
    reasonCode: list[CodeableConcept] = []
    reasonReference: list[Reference] = []


class ServiceRequest(Model):
    resourceType: Literal["ServiceRequest"]
    id: str | None = None
    status: str | None = None
    code: CodeableConcept | None = None
    performerType: CodeableConcept | None = None
    authoredOn: str | None = None
    reasonCode: list[CodeableConcept] = []
    reasonReference: list[Reference] = []
    performer: list[Reference] = []


class Procedure(Model):
    resourceType: Literal["Procedure"]
    id: str | None = None
    status: str | None = None
    code: CodeableConcept | None = None
    performedDateTime: str | None = None


Read = Annotated[Patient | Condition | Encounter | ServiceRequest | Procedure, Field(discriminator="resourceType")]


class Entry(Model):
    resource: Read | None = None


class Bundle(Model):
    resourceType: Literal["Bundle"]
    entry: list[Entry] = []


def best_ms(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000, help="prefetched resources (default 10,000)")
    parser.add_argument("--repeat", type=int, default=15, help="runs of each, the best kept (default 15)")
    args = parser.parse_args()
    body = json.dumps(grown_request(args.size), separators=(",", ":")).encode()
    prefetched = json.loads(body)["prefetch"]
    resources = [e["resource"] for v in prefetched.values() if v["resourceType"] == "Bundle" for e in v["entry"]]
    pydantic_value = TypeAdapter(Bundle | Patient | Condition | Encounter | ServiceRequest | Procedure)
    pydantic_many = TypeAdapter(list[Read])

    def lbp_cds() -> object:
        return parse_hook_request(body)["prefetch"]

    def of_parsed(convert: Callable[[list[object]], object]) -> Callable[[], object]:
        def run() -> object:
            values = [v for v in json.loads(body)["prefetch"].values() if isinstance(v, dict)]
            return convert([e["resource"] for v in values if v["resourceType"] == "Bundle" for e in v["entry"]])

        return run

    def pydantic_from_json() -> object:
        request = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
        texts = msgspec.json.decode(request["prefetch"], type=dict[str, msgspec.Raw])
        return [pydantic_value.validate_json(bytes(text)) for text in texts.values()]

    rows = [
        ("json.loads (the ceiling's parse)", lambda: json.loads(body)),
        ("lbp-cds: msgspec, JSON text → Structs", lbp_cds),
        ("msgspec: json.loads, then convert", of_parsed(decode_many)),
        ("pydantic-core: JSON text → models", pydantic_from_json),
        ("pydantic-core: json.loads, then validate", of_parsed(pydantic_many.validate_python)),
    ]
    print(f"{len(body):,} bytes, {len(resources) + 1:,} prefetched resources; best of {args.repeat} runs")
    for name, run in rows:
        print(f"  {name:<44}{best_ms(run, args.repeat):>8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
