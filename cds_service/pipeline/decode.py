"""The one boundary where FHIR JSON becomes typed data (hooks/model.py).

Every resource a rule reads (draft orders, selections' orders, proposed appointments, prefetched or
fetched resources, and what they contain) is decoded here once, with msgspec, into immutable Structs
holding only the elements the rules read. Past this module nothing reads a raw dictionary.

Wrong shapes are handled here, one way (issue 11's rule): the caller refuses a draft order or a proposed
appointment with 400 naming the path, and sets a prefetched or fetched resource aside (logged, counted,
its key incompletely had). One repair comes first: an element FHIR makes an array that arrives as one
well-shaped object (the CDS Hooks Sandbox sends a draft MedicationRequest's reasonCode so) is read as an
array of one, logged and counted as a repair, never refused. `extension` is never repaired: it is not
read but echoed back unchanged in CRD coverage information, which must not alter any other element.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache

import msgspec

from cds_service.observability import metrics
from hooks.model import CONTAINED_TYPES, READ_TYPES, OtherResource, ReadResource, Resource

log = logging.getLogger("lbp_cds.decode")

Path = tuple[str | int, ...]
MAX_REPAIRS = 8  # per resource: more single objects than that is not a client's slip
NEVER_REPAIRED = frozenset({"extension"})
PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
MESSAGE = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
JSON_KINDS = {
    "array": "an array",
    "object": "an object",
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
}


class OperationOutcome(msgspec.Struct, gc=False, tag=True, tag_field="resourceType"):
    """An error an EHR sends in place of a prefetched resource (the key is then fetched), or beside the
    results of a search (left out)."""


class SearchEntry(msgspec.Struct, gc=False):
    resource: ReadResource | OperationOutcome | None = None


class SearchBundle(msgspec.Struct, gc=False, tag="Bundle", tag_field="resourceType"):
    entry: tuple[SearchEntry, ...] = ()


# A prefetched value decoded straight from its JSON text, as nearly every EHR sends it: a search Bundle of
# resources the rules read, one such resource, or an OperationOutcome; every read element shaped as FHIR says.
Prefetched = SearchBundle | ReadResource | OperationOutcome
PREFETCHED = msgspec.json.Decoder(Prefetched)
NOT_JSON = "(not JSON text)"


def decode_prefetched(raw: msgspec.Raw) -> object:
    """A prefetched value typed in one pass from its JSON text; else its JSON value, for the careful path
    (another resource type, a shape to repair or refuse, not a resource at all)."""
    try:
        return PREFETCHED.decode(raw)
    except (msgspec.MsgspecError, RecursionError):
        pass
    try:
        return msgspec.json.decode(raw)
    except (msgspec.MsgspecError, RecursionError):
        return NOT_JSON


def typed_resources(value: SearchBundle | Resource) -> tuple[tuple[Resource, ...], tuple[int, ...] | None]:
    """The resources of a typed prefetched value, and for a Bundle the entry each came from."""
    if isinstance(value, Resource):
        return (value,), None
    found = [(i, e.resource) for i, e in enumerate(value.entry) if isinstance(e.resource, Resource)]
    return tuple(r for _i, r in found), tuple(i for i, _r in found)


# A JSON object's members, each kept as its JSON text (read later, or never).
ENVELOPE = msgspec.json.Decoder(dict[str, msgspec.Raw])


def decode_many(raws: list[object]) -> list[Resource] | None:
    """Parsed resources typed one call each (the common case, no checks of ours in between); None when one of
    them needs `decode` (a type no rule reads, a shape to repair or refuse)."""
    try:
        return [msgspec.convert(raw, READ_TYPES[raw["resourceType"]]) for raw in raws]  # type: ignore[index]
    except (msgspec.ValidationError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Problem:
    """Where a resource is not shaped as FHIR R4 says, and what was expected there (never the value)."""

    path: Path
    expectation: str


@dataclass(frozen=True)
class Decoded:
    """A resource as the rules read it (None for a type no rule reads, or a refused one), its problem if
    refused, and the paths of elements read as arrays of one."""

    resource: Resource | None
    problem: Problem | None = None
    repairs: tuple[Path, ...] = ()


def decode(raw: object) -> Decoded:
    """One resource, typed; a problem instead when its read elements are not shaped as FHIR R4 says."""
    if not isinstance(raw, dict):
        return Decoded(None, Problem((), "expected an object"))
    kind = raw.get("resourceType")
    target: type[Resource] | type[OtherResource] = (
        READ_TYPES.get(kind, OtherResource) if isinstance(kind, str) else OtherResource
    )
    value: object = without_unread_contained(raw) if "contained" in raw else raw
    repairs: list[Path] = []
    while True:
        try:
            decoded = msgspec.convert(value, target)
        except msgspec.ValidationError as error:
            what, path = parse_error(str(error))
            if what.startswith("Expected `array`, got `object`") and repairable(path) and len(repairs) < MAX_REPAIRS:
                value = wrapped(value, path)
                repairs.append(path)
                continue
            return Decoded(None, Problem(path, expectation(what)))
        break
    return Decoded(decoded if isinstance(decoded, Resource) else None, None, tuple(repairs))


def without_unread_contained(raw: dict[str, object]) -> dict[str, object]:
    """The resource without contained resources of types no rule follows a reference into (a contained
    Location or Observation is not the rules' business, and its shape is not checked)."""
    contained = raw["contained"]
    if not isinstance(contained, list):
        return raw
    kept = [item for item in contained if not isinstance(item, dict) or item.get("resourceType") in CONTAINED_TYPES]
    return raw if len(kept) == len(contained) else {**raw, "contained": kept}


def repairable(path: Path) -> bool:
    return bool(path) and isinstance(path[-1], str) and path[-1] not in NEVER_REPAIRED


def wrapped(value: object, path: Path) -> object:
    """A copy of `value` with the element at `path` put in an array of one (only the path is copied)."""
    if not path:
        return [value]
    step, rest = path[0], path[1:]
    if isinstance(value, dict) and isinstance(step, str) and step in value:
        return {**value, step: wrapped(value[step], rest)}
    if isinstance(value, list) and isinstance(step, int) and step < len(value):
        return [*value[:step], wrapped(value[step], rest), *value[step + 1 :]]
    return value


def parse_error(message: str) -> tuple[str, Path]:
    """msgspec's message split into what it expected and the path ('$.a[0].b' → ('a', 0, 'b'))."""
    match = MESSAGE.match(message)
    what = match.group("what") if match else message
    at = match.group("path") if match and match.group("path") else ""
    return what, tuple(name if name else int(index) for name, index in PATH_PART.findall(at))


def expectation(what: str) -> str:
    """What was expected, in the words of our other refusals; never the value that was sent."""
    kinds = re.match(r"Expected `([a-z |]+)`(?:, got `[a-z]+`)?$", what)
    if kinds:
        names = [k.strip() for k in kinds.group(1).split("|") if k.strip() != "null"]
        return "expected " + " or ".join(JSON_KINDS.get(k, k) for k in names)
    if what.startswith("Expected `str` matching regex"):
        return "does not have the expected form (a FHIR id: 1 to 64 letters, digits, '-' and '.')"
    missing = re.match(r"Object missing required field `([A-Za-z]+)`", what)
    if missing:
        return f"{missing.group(1)!r} is a required property"
    if what.startswith("Invalid value"):
        return "not a resource type that is allowed here"
    return "not shaped as FHIR R4 says"


def is_readable_bundle(value: Mapping[str, object]) -> bool:
    """A Bundle whose entries can be read (an array of objects, each resource, if any, an object) and whose
    links (paging) are objects with string relation and url."""
    entries, links = value.get("entry", []), value.get("link", [])
    return (
        isinstance(entries, list)
        and all(isinstance(entry, dict) and isinstance(entry.get("resource", {}), dict) for entry in entries)
        and isinstance(links, list)
        and all(
            isinstance(link, dict) and all(isinstance(link.get(name, ""), str) for name in ("relation", "url"))
            for link in links
        )
    )


def bundle_resources(value: Mapping[str, object]) -> Iterator[object]:
    """The resources of a readable Bundle, or the resource itself when it is not a Bundle."""
    if value.get("resourceType") != "Bundle":
        yield value
        return
    entries = value.get("entry", [])
    assert isinstance(entries, list)
    for entry in entries:
        if isinstance(entry, dict) and "resource" in entry:
            yield entry["resource"]


def note_repairs(decoded: Decoded, source: str, kind: str) -> None:
    """Log and count each element read as an array of one (its path, never its value)."""
    for path in decoded.repairs:
        where = "/".join(str(part) for part in path)
        log.info(
            "%s %s: %s read as an array of one",
            source,
            kind,
            where,
            extra={"event": "shape_repaired", "source": source, "resource_type": kind, "path": where},
        )
        metrics.SHAPES_REPAIRED.labels(source=source, element=str(path[-1])).inc()


@cache
def element_names() -> frozenset[str]:
    """Every element name the typed model declares (safe to log, unlike names a client chose)."""
    names: set[str] = {"resourceType"}
    structs: list[type] = [*READ_TYPES.values(), OtherResource]
    for struct in structs:
        collect_names(struct, names, set())
    return frozenset(names)


def collect_names(struct: type, names: set[str], seen: set[type]) -> None:
    if struct in seen:
        return
    seen.add(struct)
    info = msgspec.inspect.type_info(struct)
    if not isinstance(info, msgspec.inspect.StructType):
        return
    for field in info.fields:
        names.add(field.encode_name)
        for inner in inner_structs(field.type):
            collect_names(inner, names, seen)


def inner_structs(info: object) -> Iterator[type]:
    if isinstance(info, msgspec.inspect.StructType) and isinstance(info.cls, type):
        yield info.cls
    for attr in ("item_type", "types"):
        inner = getattr(info, attr, None)
        if isinstance(inner, tuple):
            for item in inner:
                yield from inner_structs(item)
        elif inner is not None:
            yield from inner_structs(inner)
