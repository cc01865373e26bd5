"""The bundled example requests (README curl example, preview page) give the cards they promise."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import yaml

from cds_service.app import create_app
from cds_service.pipeline.clock import FixedClock
from tests import crd_profile
from tests.conftest import Hooks, assert_coverage_information_action, topics

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


def test_the_order_sign_example_carries_the_coverage_information_the_docs_show(dated_hooks):
    """The example has a Coverage in force, so signing its spine referral shows CRD's system action (the docs'
    coverage-information page and the README advertise it): the referral updated with the PN requirement."""
    body = json.loads((EXAMPLES / "order-sign-referral-and-opioid.json").read_text())
    answer = dated_hooks.answer("lbp-referral-sign", body)
    [action] = answer["systemActions"]
    assert action["type"] == "update" and action["resource"]["resourceType"] == "ServiceRequest"
    assert_coverage_information_action(action)
    [extension] = crd_profile.coverage_information(action["resource"])
    assert crd_profile.values(extension)["doc-needed"] == ["admin"]
    assert crd_profile.values(extension)["coverage"] == [{"reference": "Coverage/cov-commercial"}]
