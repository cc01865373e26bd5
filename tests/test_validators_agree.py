"""jsonschema-rs answers the hot path's "is this request valid?"; jsonschema explains rejections.
They must never disagree: every example request, and many broken variants of it, get the same verdict."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.pipeline.validation import fast_validator, validator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "guideline_data" / "examples").glob("*.json"))
SPEC_FEEDBACK = sorted((ROOT / "tests" / "fixtures" / "spec_examples").glob("*-example-*overridden*.json"))
PROBES = [None, "", "x", 0, -1, 1.5, True, [], {}, ["x"], {"x": 1}, "Patient/1", "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"]
MAX_DEPTH = 4


def variants(instance: Any, depth: int = 0) -> Iterator[Any]:
    """The instance with one member replaced by each probe value, or removed, down to MAX_DEPTH."""
    if depth >= MAX_DEPTH or not isinstance(instance, (dict, list)):
        return
    keys = list(instance) if isinstance(instance, dict) else list(range(len(instance)))
    for key in keys:
        for probe in PROBES:
            changed = copy.copy(instance)
            changed[key] = probe
            yield changed
        removed = copy.copy(instance)
        del removed[key]
        yield removed
        for inner in variants(instance[key], depth + 1):
            changed = copy.copy(instance)
            changed[key] = inner
            yield changed


def assert_agree(schema_name: str, instances: Iterator[Any]) -> int:
    slow, fast = validator(schema_name), fast_validator(schema_name)
    checked = 0
    for instance in instances:
        assert fast.is_valid(instance) == slow.is_valid(instance), json.dumps(instance)[:500]
        checked += 1
    return checked


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_request_and_context_verdicts_agree(path):
    body = json.loads(path.read_text())
    envelope = {k: v for k, v in body.items() if k != "prefetch"}  # prefetch values are free-form
    assert assert_agree("request.schema.json", variants(envelope)) > 50
    assert assert_agree(f"context/{body['hook']}.schema.json", variants(body["context"])) > 20


def test_feedback_verdicts_agree():
    item = {
        "card": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "x", "system": "urn:x", "display": "X"}, "userComment": "c"},
        "outcomeTimestamp": "2026-11-26T10:00:00Z",
    }
    accepted = {**item, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}]}
    del accepted["overrideReason"]
    for body in ({"feedback": [item]}, {"feedback": [accepted]}):
        assert assert_agree("feedback.schema.json", variants(body)) > 50
