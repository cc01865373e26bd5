"""Soak test (not CI): the scale-out topology under a steady, moderate load for minutes on end.

    .venv/bin/python tools/soak.py [--minutes 10] [--rate 20] [--clients 8]

Starts what tests/test_scale_out.py starts (tests/topology.py): nginx on 127.0.0.1 in front of two
`python -m cds_service.web.server` replicas (granian, 2 workers each, JWTs required) sharing a fresh schema on
the PostgreSQL server of the tests (127.0.0.1:5432 database `test`, or LBP_TEST_POSTGRES_URL), dropped at
the end. It then sends `--rate` requests a second through nginx, cycling order-select, order-sign,
patient-view and feedback on a recently issued card, each with a fresh JWT.

Every minute and at the end it prints: requests, errors by status, p50/p99 latency, and the resident memory
(VmRSS) of every worker with its growth since the first minute. At the end it also checks that every
feedback entry acknowledged with 200 is in the database, and counts tracebacks in the replicas' logs.
Exit status 1 when there was any error, lost feedback or traceback.
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.databases import postgres_schema
from tests.topology import Replica, Topology, feedback_item, rss_kib, topology

MIX = ("lbp-referral-select", "lbp-referral-sign", "lbp-patient-view", "feedback")


@dataclass
class Window:
    """What happened in one minute (or over the whole run)."""

    requests: collections.Counter[str] = field(default_factory=collections.Counter)  # by kind
    errors: collections.Counter[str] = field(default_factory=collections.Counter)  # by status or exception
    latencies_ms: list[float] = field(default_factory=list)
    behind: int = 0  # requests not sent because every client was still busy

    def add(self, kind: str, outcome: str | None, ms: float) -> None:
        self.requests[kind] += 1
        self.latencies_ms.append(ms)
        if outcome is not None:
            self.errors[outcome] += 1

    def summary(self) -> str:
        total = sum(self.requests.values())
        kinds = ", ".join(f"{kind.removeprefix('lbp-')} {n}" for kind, n in sorted(self.requests.items()))
        errors = ", ".join(f"{status}: {n}" for status, n in self.errors.most_common()) or "none"
        line = f"{total} requests ({kinds}); errors: {errors}; latency {percentiles(self.latencies_ms)}"
        return line + (f"; {self.behind} not sent (clients busy)" if self.behind else "")


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms"


class Load:
    """Sends the requests and keeps score; thread-safe."""

    def __init__(self, cluster: Topology) -> None:
        self.cluster = cluster
        self.lock = threading.Lock()
        self.minute = Window()
        self.total = Window()
        self.recent_cards: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(maxlen=500)
        self.acknowledged: set[tuple[str, str]] = set()
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()  # keep-alive to nginx, as an EHR's client would
            self.local.session.verify = self.cluster.ca_file  # nginx's certificate, made by the topology
        return self.local.session

    def send(self, kind: str) -> None:
        started = time.perf_counter()
        outcome: str | None = None
        try:
            outcome = self.send_feedback() if kind == "feedback" else self.send_hook(kind)
        except requests.RequestException as error:
            outcome = type(error).__name__
        ms = (time.perf_counter() - started) * 1000
        with self.lock:
            self.minute.add(kind, outcome, ms)
            self.total.add(kind, outcome, ms)

    def send_hook(self, service_id: str) -> str | None:
        path = f"/cds-services/{service_id}"
        body = self.cluster.hook_body(service_id)
        response = self.session().post(
            self.cluster.nginx_url + path, json=body, headers=self.cluster.headers(path), timeout=30
        )
        if response.status_code != 200:
            return str(response.status_code)
        cards = response.json()["cards"]
        with self.lock:
            self.recent_cards.extend((service_id, card) for card in cards)
        return None

    def send_feedback(self) -> str | None:
        with self.lock:
            picked = random.choice(self.recent_cards) if self.recent_cards else None
        if picked is None:  # nothing issued yet: call a service instead
            return self.send_hook(MIX[0])
        service_id, card = picked
        item = feedback_item(card, accept=random.random() < 0.5)
        path = f"/cds-services/{service_id}/feedback"
        response = self.session().post(
            self.cluster.nginx_url + path,
            json={"feedback": [item]},
            headers=self.cluster.headers(path),
            timeout=30,
        )
        if response.status_code != 200:
            return str(response.status_code)
        with self.lock:
            self.acknowledged.add((item["card"], item["outcome"]))
        return None

    def next_minute(self) -> Window:
        with self.lock:
            done, self.minute = self.minute, Window()
            return done


class Memory:
    """VmRSS of every worker; the first minute's reading is the baseline for growth."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def sample(self) -> str:
        parts = []
        for replica in self.replicas:
            for pid in replica.worker_pids():
                rss = rss_kib(pid)
                if rss is None:
                    continue
                name = f"{replica.name}/{pid}"
                self.first.setdefault(name, rss)
                self.last[name] = rss
                parts.append(f"{name} {rss / 1024:.1f} MiB ({(rss - self.first[name]) / 1024:+.1f})")
        return "worker RSS: " + ("; ".join(parts) or "no workers found")

    def report(self, minutes: float) -> list[str]:
        lines = []
        for name, first in self.first.items():
            last = self.last.get(name, first)
            growth = (last - first) / 1024
            per_minute = growth / max(minutes - 1, 1)
            lines.append(
                f"  {name:<12} first minute {first / 1024:7.1f} MiB  end {last / 1024:7.1f} MiB  "
                f"growth {growth:+6.1f} MiB ({per_minute:+.2f} MiB/min)"
            )
        return lines


def run(cluster: Topology, minutes: float, rate: float, clients: int, say: Callable[[str], None]) -> int:
    load = Load(cluster)
    memory = Memory(cluster.replicas)
    total_requests = int(minutes * 60 * rate)
    busy = threading.BoundedSemaphore(clients)
    say(
        f"soak: {minutes:g} min at {rate:g} req/s through {cluster.nginx_url} -> "
        f"{', '.join(f'{r.name}={r.url}' for r in cluster.replicas)} ({total_requests} requests)"
    )

    def task(kind: str) -> None:
        try:
            load.send(kind)
        finally:
            busy.release()

    started = time.monotonic()
    next_report = started + 60
    minute = 0
    try:
        with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client") as pool:
            for index in range(total_requests):
                due = started + index / rate
                while (now := time.monotonic()) < due or now >= next_report:
                    if now >= next_report:
                        minute += 1
                        say(f"minute {minute}: {load.next_minute().summary()}")
                        say(f"  {memory.sample()}")
                        next_report += 60
                    else:
                        time.sleep(min(due, next_report) - now)
                if busy.acquire(blocking=False):
                    pool.submit(task, MIX[index % len(MIX)])
                else:
                    with load.lock:
                        load.minute.behind += 1
                        load.total.behind += 1
    except KeyboardInterrupt:
        say("interrupted: reporting what was done")
    elapsed = (time.monotonic() - started) / 60
    leftover = load.next_minute()
    if sum(leftover.requests.values()):
        say(f"minute {minute + 1} (last {60 * (elapsed - minute):.0f} s): {leftover.summary()}")
        say(f"  {memory.sample()}")

    say(f"\ntotal over {elapsed:.1f} min: {load.total.summary()}")
    say("memory per worker (VmRSS):")
    for line in memory.report(elapsed):
        say(line)
    lost, unknown = check_feedback(cluster, load.acknowledged)
    say(
        f"feedback: {len(load.acknowledged)} distinct entries (card, outcome) acknowledged with 200, "
        f"{lost} missing from the database; {unknown} stored with topic unknown (card not yet recorded as issued)"
    )
    tracebacks = {r.name: r.log().count("Traceback") for r in cluster.replicas}
    say(f"tracebacks in the replicas' logs: {tracebacks}")
    failed = sum(load.total.errors.values()) or lost or sum(tracebacks.values())
    return 1 if failed else 0


def check_feedback(cluster: Topology, acknowledged: set[tuple[str, str]]) -> tuple[int, int]:
    """How many acknowledged entries are missing from the database, and how many rows have no topic."""
    rows = cluster.stored_feedback()
    stored = {(row.card_uuid, row.outcome) for row in rows}
    return len(acknowledged - stored), sum(row.topic is None for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long to run (default 10)")
    parser.add_argument("--rate", type=float, default=20, help="requests per second (default 20)")
    parser.add_argument("--clients", type=int, default=8, help="most requests in flight at once (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="workers per replica (default 2)")
    args = parser.parse_args()
    if not (0 < args.minutes <= 24 * 60 and 0 < args.rate <= 1000 and 0 < args.clients <= 256):
        parser.error("--minutes in (0, 1440], --rate in (0, 1000], --clients in (0, 256]")

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        with postgres_schema() as url, topology(url, replicas=2, workers=args.workers) as cluster:
            return run(cluster, args.minutes, args.rate, args.clients, say)
    except (pytest.skip.Exception, pytest.fail.Exception) as error:  # from tests.databases: PostgreSQL is down
        say(f"soak: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
