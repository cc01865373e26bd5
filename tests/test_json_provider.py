"""JSON answers through orjson carry the same JSON as Flask's default provider."""

from __future__ import annotations

import dataclasses
import decimal
import json
import uuid
from datetime import UTC, date, datetime

import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from cds_service.web.json_provider import OrjsonProvider
from tests.builders import ortho_referral, patient


@dataclasses.dataclass
class Point:
    x: int
    when: date


VALUES = [
    {"cards": [{"summary": "Évaluation — MSC first…", "indicator": "warning", "n": 3, "ok": True, "none": None}]},
    {"b": 1, "a": [1.5, -2, "x"], "nested": {"z": [], "y": {}}},
    {"when": datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), "day": date(2026, 3, 4)},
    {"id": uuid.UUID("e48efab4-cf11-537e-98ec-e8bc1fdbc5e0"), "amount": decimal.Decimal("1.10")},
    {"point": Point(1, date(2026, 1, 2))},
    {"big": 2**70, "small": -(2**70)},  # beyond orjson: the default provider serialises it
    {1: "integer key", None: "null key"},  # likewise
    {"lone": "\ud800"},  # likewise
    ["a", ("t", "u")],
    "just a string",
    None,
]


def both(sort_keys: bool = False) -> tuple[Flask, Flask]:
    default, fast = Flask("default"), Flask("fast")
    fast.json = OrjsonProvider(fast)
    assert isinstance(default.json, DefaultJSONProvider)
    default.json.sort_keys = fast.json.sort_keys = sort_keys
    return default, fast


@pytest.mark.parametrize("sort_keys", [False, True])
@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_same_json_as_the_default_provider(value, sort_keys):
    default, fast = both(sort_keys)
    try:
        with default.app_context():
            expected = default.json.response(value).get_data()
    except TypeError:  # e.g. keys of mixed types cannot be sorted: the same failure either way
        with fast.app_context(), pytest.raises(TypeError):
            fast.json.response(value)
        return
    with fast.app_context():
        answer = fast.json.response(value)
    assert answer.mimetype == "application/json"
    assert answer.get_data().endswith(b"\n")
    assert json.loads(answer.get_data()) == json.loads(expected)
    if isinstance(value, dict):  # key order too: cards are read in order
        assert list(json.loads(answer.get_data())) == list(json.loads(expected))


def test_unserialisable_values_fail_as_before():
    default, fast = both()
    for value in ({"s": {1, 2}}, {"o": object()}):
        with default.app_context(), pytest.raises(TypeError):
            default.json.response(value)
        with fast.app_context(), pytest.raises(TypeError):
            fast.json.response(value)


def test_debug_mode_keeps_the_indented_default():
    _default, fast = both()
    fast.debug = True
    with fast.app_context():
        assert fast.json.response({"a": 1}).get_data() == b'{\n  "a": 1\n}\n'


def test_cards_keep_their_order_and_text(client):
    body = patient(45).with_lbp().order_select(ortho_referral())
    response = client.post("/cds-services/lbp-referral-select", json=body)
    card = response.get_json()["cards"][0]
    assert list(card)[:4] == ["uuid", "summary", "indicator", "detail"]
    assert "…" in card["detail"] or "—" in card["detail"] or card["detail"].isascii()
    assert response.get_data().decode("utf-8")  # UTF-8, as JSON requires
