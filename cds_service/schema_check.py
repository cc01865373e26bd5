"""A fast yes/no check compiled from a JSON Schema, for the keywords our request schemas use.

`jsonschema` stays the authority: the service asks this check first and, only when it says no,
lets `jsonschema` find and describe the errors (and decide: if `jsonschema` finds none, the
request is valid). So this check must never say yes to an instance `jsonschema` rejects; it does
exactly what `jsonschema` does for each keyword below (Draft 2020-12), and refuses to compile a
schema that uses any other keyword, a non-local `$ref` or a nested `$id` (then only `jsonschema`
is used). tests/test_schema_check.py compares the two on many instances.

Why: `jsonschema` walks a schema with a new validator object per keyword and subschema; on the
baseline order-select request that cost more than the clinical rules and card rendering together.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# Keywords that only annotate (or hold subschemas reached through $ref): no assertion.
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"})


class Unsupported(ValueError):
    """The schema uses something this compiler does not handle; use jsonschema alone."""


def is_object(value: Any) -> bool:
    return isinstance(value, dict)


def is_array(value: Any) -> bool:
    return isinstance(value, list)


def is_string(value: Any) -> bool:
    return isinstance(value, str)


def is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Number)


def is_integer(value: Any) -> bool:
    # bool is an int in Python, not in JSON; 1.0 is an integer in JSON Schema since draft 6
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


def is_null(value: Any) -> bool:
    return value is None


TYPES: dict[str, Check] = {
    "object": is_object,
    "array": is_array,
    "string": is_string,
    "number": is_number,
    "integer": is_integer,
    "boolean": is_boolean,
    "null": is_null,
}


def compile_check(schema: Mapping[str, Any]) -> Check:
    """A function telling whether an instance is valid against this (root) schema.

    Raises Unsupported when the schema goes beyond what this module reproduces exactly.
    """
    dialect = schema.get("$schema", DRAFT_2020_12) if isinstance(schema, Mapping) else DRAFT_2020_12
    if dialect != DRAFT_2020_12:
        raise Unsupported(f"$schema {dialect!r}: only Draft 2020-12 is reproduced")
    return Compiler(schema).compile(schema, root=True)


class Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}
        self.resolving: set[str] = set()

    def compile(self, schema: Any, root: bool = False) -> Check:
        if schema is True:
            return lambda _value: True
        if schema is False:
            return lambda _value: False
        if not isinstance(schema, Mapping):
            raise Unsupported(f"not a schema: {schema!r}")
        if "$id" in schema and not root:
            raise Unsupported("a nested $id changes how references resolve")
        checks = [self.keyword(name, value, schema) for name, value in schema.items() if name not in ANNOTATIONS]
        if not checks:
            return lambda _value: True
        if len(checks) == 1:
            return checks[0]
        return lambda value: all(check(value) for check in checks)

    def keyword(self, name: str, value: Any, schema: Mapping[str, Any]) -> Check:
        if name == "$ref":
            return self.k_ref(value, schema)
        build = None if name.startswith("$") else getattr(self, f"k_{name}", None)
        if build is None:
            raise Unsupported(f"keyword {name!r}")
        return build(value, schema)

    def k_type(self, types: Any, _schema: Mapping[str, Any]) -> Check:
        names = [types] if isinstance(types, str) else list(types)
        if not names or any(n not in TYPES for n in names):
            raise Unsupported(f"type {types!r}")
        tests = [TYPES[n] for n in names]
        if len(tests) == 1:
            return tests[0]
        return lambda value: any(test(value) for test in tests)

    def k_properties(self, properties: Mapping[str, Any], _schema: Mapping[str, Any]) -> Check:
        subs = [(name, self.compile(sub)) for name, sub in properties.items()]

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            return all(sub(value[name]) for name, sub in subs if name in value)

        return check

    def k_required(self, names: list[str], _schema: Mapping[str, Any]) -> Check:
        required = list(names)
        return lambda value: not isinstance(value, dict) or all(name in value for name in required)

    def k_dependentRequired(self, dependencies: Mapping[str, list[str]], _schema: Mapping[str, Any]) -> Check:
        pairs = [(name, list(needed)) for name, needed in dependencies.items()]

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            return all(all(n in value for n in needed) for name, needed in pairs if name in value)

        return check

    def k_minProperties(self, minimum: int, _schema: Mapping[str, Any]) -> Check:
        return lambda value: not isinstance(value, dict) or len(value) >= minimum

    def k_minLength(self, minimum: int, _schema: Mapping[str, Any]) -> Check:
        return lambda value: not isinstance(value, str) or len(value) >= minimum

    def k_pattern(self, pattern: str, _schema: Mapping[str, Any]) -> Check:
        search = re.compile(pattern).search  # jsonschema: re.search(pattern, instance)
        return lambda value: not isinstance(value, str) or search(value) is not None

    def k_const(self, const: Any, _schema: Mapping[str, Any]) -> Check:
        if not isinstance(const, str):
            raise Unsupported("const other than a string")  # jsonschema compares strings with ==
        return lambda value: value == const

    def k_minimum(self, minimum: Any, _schema: Mapping[str, Any]) -> Check:
        if not is_number(minimum):
            raise Unsupported(f"minimum {minimum!r}")
        return lambda value: not is_number(value) or not value < minimum

    def k_minItems(self, minimum: int, _schema: Mapping[str, Any]) -> Check:
        return lambda value: not isinstance(value, list) or len(value) >= minimum

    def k_items(self, items: Any, schema: Mapping[str, Any]) -> Check:
        if "prefixItems" in schema:
            raise Unsupported("prefixItems")
        sub = self.compile(items)
        return lambda value: not isinstance(value, list) or all(sub(item) for item in value)

    def k_ref(self, ref: str, _schema: Mapping[str, Any]) -> Check:
        if not ref.startswith("#/"):
            raise Unsupported(f"$ref {ref!r}")
        if ref in self.resolving:
            raise Unsupported(f"recursive $ref {ref!r}")
        if ref not in self.refs:
            target: Any = self.root
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, Mapping) or part not in target:
                    raise Unsupported(f"$ref {ref!r} does not resolve")
                target = target[part]
            self.resolving.add(ref)
            try:
                self.refs[ref] = self.compile(target)
            finally:
                self.resolving.discard(ref)
        return self.refs[ref]
