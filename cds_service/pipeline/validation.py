"""Reading and validating what a client sends: JSON text, then JSON Schemas written from the 2.0.1 spec.

Every refusal says where (a path) and what kind of problem, never the value that was sent: the
messages go back to the client, and a short log-safe form (`where`) to the log, where names the
client chose (prefetch keys, unknown members) are masked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from cds_service.errors import BadRequest
from cds_service.pipeline.decode import ENVELOPE, Prefetched, decode_prefetched, element_names
from hooks.service import ServiceDefinition

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
MAX_REPORTED_ERRORS = 5
# Deeper than any CDS Hooks context or feedback body (a draft order's extension inside a coding is
# about 12 levels down): beyond this the body is refused before any code walks into it.
MAX_DEPTH = 64
# A JSON escape of a UTF-16 surrogate: only these can make a Python string that is not valid Unicode.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@cache
def schema_document(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    """Compiled once per schema file, then reused by every request: explains what is wrong."""
    return Draft202012Validator(schema_document(name))


@cache
def fast_validator(name: str) -> jsonschema_rs.Draft202012Validator:
    """The same schema compiled by jsonschema-rs: a valid request (nearly every call) is confirmed in
    microseconds, where the pure-Python validator takes a tenth of a millisecond."""
    return jsonschema_rs.Draft202012Validator(schema_document(name))


@cache
def schema_vocabulary() -> frozenset[str]:
    """Every member name our schemas define: safe to log, unlike names the client chose."""
    names: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("properties", "$defs"):
                if isinstance(node.get(key), dict):
                    names.update(node[key])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    for path in SCHEMA_DIR.rglob("*.schema.json"):
        collect(schema_document(path.relative_to(SCHEMA_DIR).as_posix()))
    return frozenset(names) | element_names()


def prepare(hooks: Iterable[str]) -> None:
    """Compile every schema at start-up, so that no worker's first hook call or feedback pays for it."""
    for name in ["request.schema.json", "feedback.schema.json", *(f"context/{hook}.schema.json" for hook in hooks)]:
        fast_validator(name)
    schema_vocabulary()


# --------------------------------------------------------------------------
# JSON text
# --------------------------------------------------------------------------


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class TypedHookRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A hook request as nearly every EHR sends it, read in one pass: the prefetched values straight into
    typed resources (pipeline/decode.py), the rest as JSON values for the schemas."""

    hook: object = msgspec.UNSET
    hookInstance: object = msgspec.UNSET
    fhirServer: object = msgspec.UNSET
    fhirAuthorization: object = msgspec.UNSET
    context: object = msgspec.UNSET
    prefetch: dict[str, Prefetched | None] | msgspec.UnsetType = msgspec.UNSET
    extension: object = msgspec.UNSET


TYPED_REQUEST = msgspec.json.Decoder(TypedHookRequest)


class HookRequestBody(dict[str, Any]):
    """A hook request's members, its prefetched values typed where they could be, and its text (a prefetched
    resource's JSON is read from it only when it must be echoed: CRD coverage information)."""

    def __init__(self, members: Mapping[str, Any], text: bytes) -> None:
        super().__init__(members)
        self.text = text


def parse_hook_request(raw: bytes) -> Any:
    """A hook request read once: typed in one pass; else each member on its own, the prefetched values typed
    where they can be (pipeline/decode.py); else (not an object, a lone surrogate escape, a number msgspec
    cannot hold…) as parse_json reads any body."""
    if SURROGATE_ESCAPE.search(raw) is None:
        try:
            typed = TYPED_REQUEST.decode(raw)
            members = {f: v for f in typed.__struct_fields__ if (v := getattr(typed, f)) is not msgspec.UNSET}
            return HookRequestBody(members, raw)
        except (msgspec.MsgspecError, RecursionError):
            pass
        try:
            texts = ENVELOPE.decode(raw)
            members = {name: msgspec.json.decode(text) for name, text in texts.items() if name != "prefetch"}
            if "prefetch" in texts:
                members["prefetch"] = prefetch_values(texts["prefetch"])
            return HookRequestBody(members, raw)
        except (msgspec.MsgspecError, RecursionError):
            pass
    return parse_json(raw)


def prefetch_values(raw: msgspec.Raw) -> Any:
    """{key: value typed where it can be} for a prefetch object; anything else parsed as it is (the schema
    refuses it)."""
    try:
        return {key: decode_prefetched(text) for key, text in ENVELOPE.decode(raw).items()}
    except msgspec.ValidationError:
        return msgspec.json.decode(raw)


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body; BadRequest when it is not JSON text (RFC 8259) a service can read.

    msgspec parses it (a third faster than the standard library on a large body); what msgspec refuses
    (malformed text, numbers beyond 64 bits, very deep nesting) or may let through (a lone surrogate escape)
    is parsed again by the standard library, which says where the problem is, or reads the numbers."""
    if SURROGATE_ESCAPE.search(raw) is None:
        try:
            return msgspec.json.decode(raw)
        except (msgspec.MsgspecError, RecursionError):
            pass
    return parse_json_exactly(raw)


def parse_json_exactly(raw: bytes) -> Any:
    try:
        value = json.loads(raw, parse_constant=refuse_constant)
    except RecursionError:
        raise BadRequest(
            f"The request body is nested too deeply (more than {MAX_DEPTH} levels are never needed).",
            where="nesting",
        ) from None
    except UnicodeDecodeError:
        raise BadRequest("The request body is not UTF-8 text.", where="encoding") from None
    except ValueError as error:
        # JSONDecodeError's own message says where (line, column), never what was there.
        where = f"line {error.lineno} column {error.colno}" if isinstance(error, json.JSONDecodeError) else None
        detail = error.msg if isinstance(error, json.JSONDecodeError) else "a number out of range or NaN/Infinity"
        raise BadRequest(
            f"The request body is not valid JSON: {detail}" + (f" ({where})" if where else "."), where=where
        ) from None
    if SURROGATE_ESCAPE.search(raw):
        refuse_lone_surrogates(value)
    return value


def refuse_lone_surrogates(value: Any) -> None:
    """A \\uD800-style escape without its pair is valid JSON syntax but no Unicode text (RFC 8259 §8.2)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        path = next(surrogate_paths(value, ()), ())
        raise BadRequest(
            f"{format_path(path)}: a string holds a lone UTF-16 surrogate escape (such as \\ud800): not Unicode text.",
            where=f"{log_path(path)} (lone surrogate)",
        ) from None


def surrogate_paths(value: Any, at: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    stack = [(value, at)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str) and not is_unicode(node):
            yield path
        elif isinstance(node, dict):
            for key, child in node.items():
                if not is_unicode(key):
                    yield path
                stack.append((child, (*path, key)))
        elif isinstance(node, list):
            stack.extend((child, (*path, index)) for index, child in enumerate(node))


def is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def refuse_deep_nesting(value: Any, prefix: str, limit: int = MAX_DEPTH) -> None:
    """BadRequest naming where `value` goes deeper than `limit` levels (walked without recursion)."""
    if nested_deeper_than(value, limit - 1):
        name_too_deep(value, prefix, limit)


def nested_deeper_than(value: Any, levels: int) -> bool:
    """Whether `value` has objects or arrays more than `levels` deep below it: the usual request's check,
    without the paths that only a refusal needs. Level by level, each level's containers in one comprehension
    (a stack of (node, level) pairs cost three times as much on the baseline request's context)."""
    depth, level = 0, [value]
    while level:
        if depth > levels:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node if type(node) is list else ())
            if type(child) is dict or type(child) is list
        ]
        depth += 1
    return False


def name_too_deep(value: Any, prefix: str, limit: int) -> None:
    """BadRequest naming the first path deeper than `limit` levels."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= limit:
            where = (prefix, *path) if prefix else path
            raise BadRequest(
                f"{format_path(where)}: nested more than {limit} levels deep; no CDS Hooks member is.",
                where=f"{log_path(where)} (nesting)",
            )
        if type(node) is dict:
            stack.extend((child, (*path, key)) for key, child in node.items() if type(child) in (dict, list))
        elif type(node) is list:
            stack.extend((child, (*path, index)) for index, child in enumerate(node) if type(child) in (dict, list))


# --------------------------------------------------------------------------
# hook requests
# --------------------------------------------------------------------------


def validate_request(service: ServiceDefinition, body: Any) -> None:
    """Raise BadRequest saying what is wrong with a hook request for this service."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object (a CDS Hooks request).", where="body (type)")
    # Prefetched values may be JSON text still (parse_hook_request): the schema accepts any value there.
    prefetch = body.get("prefetch")
    report("request.schema.json", {**body, "prefetch": {}} if isinstance(prefetch, dict) else body, "")
    if body["hook"] != service.hook:
        raise BadRequest(
            f"hook: service '{service.id}' answers the '{service.hook}' hook only (this request is for another).",
            where="hook (another hook)",
        )
    refuse_deep_nesting(body["context"], "context")
    report(f"context/{service.hook}.schema.json", body["context"], "context")


def report(schema_name: str, instance: Any, prefix: str, title: str = "Invalid CDS Hooks request") -> None:
    """BadRequest listing what is wrong (at most a few errors, each with its path).

    jsonschema-rs says quickly whether the instance is valid; when it is not, jsonschema (the
    reference implementation) words the first few errors, found lazily: a refusal costs about as
    much as reading the body, however many errors it has.
    """
    if fast_validator(schema_name).is_valid(instance):
        return
    raise_first_errors(validator(schema_name).iter_errors(instance), (prefix,) if prefix else (), title)
    # One verdict per request: the two validators read some patterns differently (Python's `$` matches before
    # a final newline, ECMA-262's does not), and what either refuses is refused.
    where = prefix or "(body)"
    raise BadRequest(
        f"{title}: {where} does not have the form the schema requires (a value has the wrong form, such as a "
        "trailing newline in an id).",
        where=f"{where} (pattern)",
    )


def raise_first_errors(errors: Iterable[ValidationError], prefix: tuple[str | int, ...], title: str) -> None:
    found = list(islice(errors, MAX_REPORTED_ERRORS + 1))
    if not found:
        return
    shown = found[:MAX_REPORTED_ERRORS]
    more = "; and more" if len(found) > MAX_REPORTED_ERRORS else ""
    raise BadRequest(
        f"{title}: " + "; ".join(describe(error, prefix) for error in shown) + more,
        where=", ".join(f"{log_path((*prefix, *error.absolute_path))} ({error.validator})" for error in shown),
    )


def check_selections(selections: Sequence[str], drafted: set[str]) -> None:
    """Every selection must name an order in draftOrders (order-select)."""
    missing = [index for index, selection in enumerate(selections) if selection not in drafted]
    if missing:
        paths = ", ".join(f"context/selections/{index}" for index in missing)
        raise BadRequest(
            f"{paths}: not found in context/draftOrders (a selection names a draft order as ResourceType/id).",
            where=f"{paths} (not in draftOrders)",
        )


# --------------------------------------------------------------------------
# messages: where and what kind, never the value
# --------------------------------------------------------------------------

JSON_TYPES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def describe(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> str:
    """One schema error for the client: its path and what the schema expects there."""
    return f"{format_path((*prefix, *error.absolute_path))}: {expectation(error)}"


def expectation(error: ValidationError) -> str:
    """What the schema asks for, in words built from the schema alone (never the instance)."""
    keyword: Any = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    if keyword == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return "expected " + " or ".join(JSON_TYPES.get(str(kind), str(kind)) for kind in kinds)
    if keyword == "required":
        absent = [name for name in expected if not (isinstance(instance, dict) and name in instance)]
        return "; ".join(f"{name!r} is a required property" for name in absent or expected)
    if keyword == "dependentRequired":
        return "a member here requires others: " + "; ".join(
            f"{name} needs {', '.join(needed)}" for name, needed in expected.items()
        )
    if keyword == "additionalProperties":
        extra = sorted(name for name in instance if name not in schema.get("properties", {}))
        return f"members not allowed here: {', '.join(extra)}" if extra else "members not allowed here"
    if keyword in ("enum", "const"):
        allowed = expected if keyword == "enum" else [expected]
        return "expected one of " + ", ".join(json.dumps(value) for value in allowed[:10])
    if keyword == "pattern":
        return f"does not have the expected form (pattern {expected})"
    if keyword in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
        what = {"Length": "character", "Items": "item", "Properties": "member"}[keyword[3:]]
        plural = "" if expected == 1 else "s"
        return f"expected {'at least' if keyword.startswith('min') else 'at most'} {expected} {what}{plural}"
    bounds = {"minimum": "≥", "maximum": "≤", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if keyword in bounds:
        return f"expected a number {bounds[keyword]} {expected}"
    if keyword == "anyOf":
        return "matches none of the allowed shapes"
    if keyword == "oneOf":
        return "matches none of the allowed shapes, or more than one"
    return f"fails the schema's {keyword!r} rule"


def format_path(path: Iterable[str | int]) -> str:
    return "/".join(str(part) for part in path if part != "") or "(body)"


def log_path(path: Iterable[str | int]) -> str:
    """The path with every name the client chose (prefetch keys, unknown members) masked as '*'."""
    known = schema_vocabulary()
    return "/".join(str(part) if isinstance(part, int) or part in known else "*" for part in path if part != "") or (
        "(body)"
    )
