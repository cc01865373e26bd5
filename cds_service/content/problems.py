"""Content problems in plain words, each with its file, line and field, for informatics staff.

Problems are collected with the path of the field inside its file (as a JSON pointer would name it);
line numbers are looked up only when there are problems, from the positions PyYAML records while
composing a file (JSON is YAML too, so the same lookup serves both).
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml
from jsonschema import ValidationError

Step = str | int
FieldPath = tuple[Step, ...]


@dataclass(frozen=True)
class Problem:
    file: str  # relative to the content folder, e.g. "cards.yaml"
    path: FieldPath  # where inside the file; () for the whole file
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"line {self.line}")
        where.append(f"field {field_name(self.path)}" if self.path else "whole file")
        return f"{', '.join(where)}: {self.message}"


def field_name(path: FieldPath) -> str:
    """`cards > msc-evaluation-first > suggestions > entry 1 > label`: list positions count from 1."""
    return " > ".join(f"entry {step + 1}" if isinstance(step, int) else step for step in path)


def placeholders(text: str) -> set[str]:
    """The {names} in a text (cards.yaml and crd.yaml); ValueError when a brace is not paired."""
    return {name for _literal, name, _spec, _conversion in string.Formatter().parse(text) if name is not None}


# --------------------------------------------------------------------------
# JSON Schema errors in plain words
# --------------------------------------------------------------------------

TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a group of named fields",
    "null": "empty (null)",
}


def schema_problems(file: str, errors: Iterable[ValidationError]) -> list[Problem]:
    problems: list[Problem] = []
    for error in errors:
        problems += describe(file, error)
    return list(dict.fromkeys(problems))  # one error kind can be reported once per missing field


def describe(file: str, error: ValidationError) -> list[Problem]:
    path: FieldPath = tuple(error.absolute_path)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        return unknown_fields(file, path, error)
    if error.validator == "required":
        return [
            Problem(file, path, f'the required field "{name}" is missing')
            for name in as_list(error.validator_value)
            if isinstance(error.instance, Mapping) and name not in error.instance
        ]
    # A schema may word its own problem (x-problem), except for a value of the wrong kind.
    custom = schema.get("x-problem") if error.validator != "type" else None
    return [Problem(file, path, custom or plain_message(error))]


def unknown_fields(file: str, path: FieldPath, error: ValidationError) -> list[Problem]:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    known = list(schema.get("properties", {}))
    extras = [key for key in as_list(error.instance) if key not in known]
    problems = []
    for key in extras:
        hint = difflib.get_close_matches(str(key), known, n=1)
        suggestion = f' Did you mean "{hint[0]}"?' if hint else ""
        allowed = ", ".join(known) or "none"
        problems.append(
            Problem(file, (*path, key), f'"{key}" is not a field that belongs here.{suggestion} Allowed: {allowed}.')
        )
    return problems


def plain_message(error: ValidationError) -> str:
    value, limit, kind = error.instance, error.validator_value, error.validator
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: f"should be {' or '.join(TYPE_WORDS.get(t, t) for t in as_list(limit))}, not {shown(value)}",
        "enum": lambda: f"{shown(value)} is not allowed here; use one of: {', '.join(map(str, as_list(limit)))}",
        "const": lambda: f"must be {shown(limit)}, not {shown(value)}",
        "minLength": lambda: "is empty" if limit == 1 else f"must be at least {limit} characters long",
        "maxLength": lambda: f"is {len(str(value))} characters long; at most {limit} are allowed",
        "pattern": lambda: f"{shown(value)} is not written in the expected form",
        "minItems": lambda: "is an empty list; list at least one entry" if limit == 1 else f"needs {limit} entries",
        "minProperties": lambda: "is empty; give at least one entry",
        "minimum": lambda: f"is {value}; the smallest allowed value is {limit}",
        "maximum": lambda: f"is {value}; the largest allowed value is {limit}",
        "uniqueItems": lambda: "lists the same entry more than once",
        "oneOf": lambda: "does not match any of the allowed forms",
        "not": lambda: "is written in a form that is not allowed here",
        "false": lambda: "must not be written here",
    }
    if error.validator is None or error.schema is False:
        return messages["false"]()
    return messages.get(str(kind), lambda: error.message)()


def as_list(value: Any) -> list[Any]:
    """A schema keyword's value, or an instance's keys, as a list (a single value becomes one entry)."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        return list(value)
    return [value]


def shown(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 60 else f'"{value[:57]}..."'
    if isinstance(value, Mapping):
        return "a group of named fields"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty (null)"
    return str(value).lower() if isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------
# Line numbers
# --------------------------------------------------------------------------


def with_lines(problems: Sequence[Problem], files: Mapping[str, bytes]) -> list[Problem]:
    """The same problems, each with the line its field is written on (when the file can be parsed).

    `files`: the files' bytes as they were checked."""
    trees: dict[str, yaml.Node | None] = {}
    located = []
    for problem in problems:
        if problem.line is not None:
            located.append(problem)
            continue
        if problem.file not in trees:
            trees[problem.file] = compose_text(files.get(problem.file))
        tree = trees[problem.file]
        located.append(replace(problem, line=line_of(tree, problem.path)) if tree is not None else problem)
    return located


def compose_text(data: bytes | None) -> yaml.Node | None:
    if data is None:
        return None
    try:
        return yaml.compose(data.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (UnicodeDecodeError, yaml.YAMLError):
        return None


def line_of(node: yaml.Node, path: FieldPath) -> int:
    """The line of the deepest part of `path` that the file has (a missing field: its parent's line)."""
    line = node.start_mark.line + 1
    for step in path:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(step)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            break
    return line
