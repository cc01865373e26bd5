"""Fuzzing the HTTP API: no request a client can send gets a 5xx, and every answer is one the OpenAPI
document allows.

Two generators, both seeded and bounded (a few minutes on 2 cores at most), both against the app
in-process (JWTs required, a fresh token per request), where an exception is seen the moment it
happens: schemathesis from the OpenAPI document (/openapi.json), positive and negative cases; and a
mutation fuzzer over the bundled examples and feedback on their cards: deep nesting, wrong types at
any depth, lone surrogates, NUL, huge numbers, NaN, deleted and unknown members, long arrays.
"""

from __future__ import annotations

import atexit
import copy
import json
import random
import shutil
import tempfile
import uuid
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import positive_data_acceptance

from cds_service.app import create_app
from cds_service.web.openapi import openapi_document
from cds_service.wiring import services_of
from tests.api_contract import assert_answer_allowed, auth_headers, examples, jwt_settings
from tests.databases import migrated

# Hypothesis keeps caches in ./.hypothesis by default: never in the checkout.
HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="lbp-hypothesis-")
atexit.register(shutil.rmtree, HYPOTHESIS_HOME, True)
set_hypothesis_home_dir(HYPOTHESIS_HOME)

SEED = 20261126
MUTATED_REQUESTS = 2000
SCHEMATHESIS_EXAMPLES = 40  # per operation and generation mode


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory, content):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    app = create_app(jwt_settings(tmp_path, migrated(f"sqlite:///{tmp_path}/fuzz.sqlite3")), content=content)
    yield app
    services_of(app).close()


# --------------------------------------------------------------------------
# schemathesis, from the OpenAPI document the app serves
# --------------------------------------------------------------------------


class AppUnderTest:
    """The WSGI app schemathesis sends to: the module's app, known only once its fixture has made it."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


# The document /openapi.json serves (test_openapi.py checks they are the same), loaded at import:
# schemathesis parametrizes the test with its operations; each case goes to the app in-process.
UNDER_TEST = AppUnderTest()
schema = schemathesis.openapi.from_dict(openapi_document())
schema.app = UNDER_TEST
STATUSES: Counter[tuple[str, int]] = Counter()


@schema.parametrize()
@seed(SEED)
@settings(
    max_examples=SCHEMATHESIS_EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_finds_no_5xx_and_only_documented_answers(fuzzed_app, case):
    UNDER_TEST.app = fuzzed_app
    # Every operation the document secures gets a fresh JWT (the hook calls, feedback, the PN endpoints).
    headers = auth_headers(case.formatted_path) if case.operation.definition.raw.get("security") else {}
    # Every check but "schema-valid data is accepted": the service has rules no JSON Schema states (a
    # selection must name a draft order, the data a card needs must be had) answered 400 and 412 as
    # documented.
    response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
    STATUSES[(case.formatted_path, response.status_code)] += 1


def test_schemathesis_counts(request):
    """Runs after the schemathesis cases: what they sent and got, for the record (pytest -s shows it)."""
    print(f"\nschemathesis: {sum(STATUSES.values())} requests, statuses {dict(sorted(STATUSES.items()))}")


# --------------------------------------------------------------------------
# seeded mutations of the bundled examples and of feedback on their cards
# --------------------------------------------------------------------------

DEEP = "__lbp_deep__"


def paths_of(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*at, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, (*at, index))
    return found


def replacement(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            0,
            -1,
            1.5,
            2**64,
            10**40,
            -(10**300),
            1e308,
            float("nan"),
            float("inf"),
            "",
            "x" * 5000,
            "\ud800",
            "a\udfffb",
            "nul\x00here",
            "😀",
            [],
            {},
            [1, "two", None],
            {"resourceType": 5},
            {"coding": 1.5},
            [[[[[]]]]],
            DEEP,
        ]
    )


def mutate(rng: random.Random, body: Any) -> Any:
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths_of(body))
        if not path:
            body = replacement(rng)
            continue
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = rng.random()
        if action < 0.6:
            parent[last] = replacement(rng)
        elif action < 0.75 and isinstance(parent, dict):
            del parent[last]
        elif action < 0.85 and isinstance(parent, dict):
            parent[rng.choice(["extension", "unknown", "\ud83d", "resourceType"])] = replacement(rng)
        elif isinstance(parent, list):
            parent.extend([parent[last]] * rng.choice([2, 50, 2000]))
        else:
            parent[last] = {"value": parent[last], "nested": replacement(rng)}
    return body


def serialise(rng: random.Random, body: Any) -> bytes:
    text = json.dumps(body, allow_nan=True)  # NaN and Infinity written as JavaScript does: not JSON
    depth = rng.choice([70, 900, 10_000])
    return text.replace(json.dumps(DEEP), "[" * depth + "]" * depth).encode("utf-8", "surrogatepass")


def feedback_for(cards: list[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for card in cards:
        entries.append(
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": card["overrideReasons"][0], "userComment": "not for this patient"},
                "outcomeTimestamp": "2026-11-26T10:00:00Z",
            }
        )
        if card.get("suggestions"):
            entries.append(
                {
                    "card": card["uuid"],
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                    "outcomeTimestamp": "2026-11-26T10:01:00.123+01:00",
                }
            )
    return {
        "feedback": entries
        or [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00Z"}]
    }


def targets(client) -> list[tuple[str, Any]]:
    """(path, body) to mutate: every example, and feedback on the cards it gets."""
    found = []
    for service, body in examples():
        path = f"/cds-services/{service}"
        found.append((path, body))
        answer = client.post(path, json=body, headers=auth_headers(path))
        cards = answer.get_json()["cards"] if answer.status_code == 200 else []
        found.append((path + "/feedback", feedback_for(cards)))
    return found


def test_mutated_examples_and_feedback_get_no_5xx_and_only_documented_answers(fuzzed_app):
    client = fuzzed_app.test_client()
    rng = random.Random(SEED)
    bodies = targets(client)
    statuses: Counter[tuple[str, int]] = Counter()
    for _ in range(MUTATED_REQUESTS):
        path, body = rng.choice(bodies)
        raw = serialise(rng, mutate(rng, body))
        response = client.post(path, data=raw, content_type="application/json", headers=auth_headers(path))
        assert_answer_allowed(path, response.status_code, response.get_data(), response.headers)
        statuses[("feedback" if path.endswith("/feedback") else "hook", response.status_code)] += 1
    print(f"\nmutation fuzzer: {MUTATED_REQUESTS} requests, statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) == MUTATED_REQUESTS
    assert any(status == 200 for _kind, status in statuses), "mutations should leave some requests valid"
