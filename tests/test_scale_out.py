"""Scale-out: nginx in front of two replicas (granian) sharing PostgreSQL, as the production recipe says
(docs/operators/index.md).

Run alone with `pytest -m scale_out`. Needs nginx (Debian package; `.ci/run` installs it) and the PostgreSQL
server of the storage tests; without either the test skips on a developer's machine and fails with CI=true.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.databases import postgres_schema, unreachable
from tests.topology import Topology, feedback_item, find_nginx, topology
from tests.waiting import wait_for

pytestmark = [pytest.mark.scale_out, pytest.mark.processes]

SERVICES = ("lbp-referral-select", "lbp-referral-sign", "lbp-patient-view")
CALLS_AFTER_KILL = 24


@pytest.fixture
def cluster():
    if find_nginx() is None:
        unreachable("nginx", FileNotFoundError("not installed (apt-get install nginx)"))
    with postgres_schema() as url, topology(url, replicas=2, workers=2) as running:
        yield running


class Run:
    """Everything sent through nginx, which replica answered, and every feedback entry acknowledged."""

    def __init__(self, cluster: Topology) -> None:
        self.cluster = cluster
        self.hook_answered_by: list[str] = []
        self.feedback_answered_by: list[str] = []
        self.cross_replica_feedback = 0
        self.acknowledged: set[tuple[str, str]] = set()  # (card uuid, outcome)

    def answered_by(self, response) -> str:
        replica = self.cluster.replica_at(response.headers.get("X-Upstream"))
        assert replica is not None, response.headers.get("X-Upstream")
        return replica.name

    def failed(self, what: str, response) -> str:
        upstream = response.headers.get("X-Upstream")
        return f"{what}: {response.status_code} from {upstream}: {response.text[:300]}\n{self.cluster.diagnostics()}"

    def hook(self, service_id: str) -> tuple[str, list[dict[str, Any]]]:
        response = self.cluster.call(service_id)
        assert response.status_code == 200, self.failed(service_id, response)
        cards = response.json()["cards"]
        assert cards, f"{service_id}: the example must give cards"
        replica = self.answered_by(response)
        self.hook_answered_by.append(replica)
        return replica, cards

    def give_feedback(self, service_id: str, cards: list[dict[str, Any]], issued_by: str, accept: bool) -> None:
        items = [feedback_item(card, accept) for card in cards]
        response = self.cluster.feedback(service_id, items)
        assert response.status_code == 200, self.failed(service_id + " feedback", response)
        replica = self.answered_by(response)
        self.feedback_answered_by.append(replica)
        self.cross_replica_feedback += replica != issued_by
        self.acknowledged |= {(item["card"], item["outcome"]) for item in items}

    def round(self, accept: bool) -> None:
        """Three hook calls, then feedback on each one's cards: six requests, so round robin puts every
        kind of request on both replicas and each feedback on the replica that did not issue the card."""
        issued = [(service, *self.hook(service)) for service in SERVICES]
        for service, replica, cards in issued:
            self.give_feedback(service, cards, replica, accept)


def test_two_replicas_behind_nginx_share_feedback_and_replay_store_and_survive_one_dying(cluster):
    a, b = cluster.replicas
    run = Run(cluster)

    # 1. Hook calls and feedback alternate across both replicas.
    for accept in itertools.islice(itertools.cycle([True, False]), 4):
        run.round(accept)
    assert set(run.hook_answered_by) == {"A", "B"}, run.hook_answered_by
    assert set(run.feedback_answered_by) == {"A", "B"}, run.feedback_answered_by
    assert run.cross_replica_feedback > 0, "no feedback reached the replica that did not issue the card"

    # 2. A JWT accepted by replica A is a replay for replica B: the jti store is the shared database.
    token = cluster.token("/cds-services/lbp-referral-select")
    assert cluster.call("lbp-referral-select", base=a.url, token=token).status_code == 200
    replayed = cluster.call("lbp-referral-select", base=b.url, token=token)
    assert replayed.status_code == 401, replayed.text
    assert replayed.headers["WWW-Authenticate"].startswith("Bearer")
    assert wait_for(lambda: "(replay)" in b.log(), timeout=5, message="replica B logs the refusal as a replay")

    # 3. Replica A dies (master and workers, SIGKILL) mid-run: every later call succeeds through B.
    a.kill()
    assert not a.alive()
    before = len(run.hook_answered_by), len(run.feedback_answered_by)
    for accept in itertools.islice(itertools.cycle([False, True]), CALLS_AFTER_KILL // 6):
        run.round(accept)
    after_kill = run.hook_answered_by[before[0] :] + run.feedback_answered_by[before[1] :]
    assert len(after_kill) == CALLS_AFTER_KILL
    assert set(after_kill) == {"B"}
    assert b.alive()

    # 4. Every feedback entry acknowledged with 200 is in PostgreSQL, whichever replica stored it.
    rows = cluster.stored_feedback()
    stored = {(row.card_uuid, row.outcome) for row in rows}
    assert len(run.acknowledged) == 8 * 4  # 8 rounds, 4 cards each (sign gives 2)
    assert run.acknowledged <= stored, run.acknowledged - stored
    assert len(rows) == len(run.acknowledged)
