"""The bundled example requests (README curl example, preview page) give the cards they promise."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import yaml

from cds_service.app import create_app
from cds_service.pipeline.clock import FixedClock
from tests.conftest import Hooks, topics

EXAMPLES = Path(__file__).resolve().parent.parent / "guideline_data" / "examples"
INDEX = yaml.safe_load((EXAMPLES / "index.yaml").read_text())


@pytest.fixture
def dated_hooks(settings, content) -> Hooks:
    as_of = date.fromisoformat(INDEX["as_of"])
    return Hooks(create_app(settings, content=content, clock=FixedClock(as_of)).test_client())


@pytest.mark.parametrize("example", INDEX["examples"], ids=lambda e: e["id"])
def test_example_gives_its_expected_cards(dated_hooks, example):
    body = json.loads((EXAMPLES / f"{example['id']}.json").read_text())
    assert topics(dated_hooks.call(example["service"], body)) == example["expected_topics"]
