"""Nothing acknowledged is ever lost (issue 20): 50 concurrent Prior Notification submissions, as JSON and on the
web form, while the PostgreSQL server under the service is stopped at once (immediate shutdown: no checkpoint,
crash recovery on restart) and started again. Every record answered 201/303 is in the database afterwards, as
acknowledged; every refusal is 503 with Retry-After (the form's refusal page keeps what was typed); a resend
of an acknowledged submission is recognised and stored once.

The PostgreSQL cluster is the test's own (initdb on a free port, in a temporary folder), stopped by its PID:
never the machine's server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import requests

from tests.builders import appointment
from tests.clinical_date import TODAY
from tests.pn import completed_fields, response_json
from tests.test_appointment_book import adult_with_lbp
from tests.test_startup import free_port, server, service_env, wait_for_service
from tests.topology import feedback_item, migrate_database

pytestmark = pytest.mark.processes

SUBMISSIONS_PER_KIND = 25
OUTAGE_SECONDS = 2.0
CRASH_AFTER_SECONDS = 1.0
STAGGER_SECONDS = 0.1  # submission n is first sent n × this after the start: before, during and after the outage
DEADLINE_SECONDS = 45.0
RESPONSES = "/fhir/QuestionnaireResponse"
APPOINTMENT_BOOK = "/cds-services/lbp-appointment-book"


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


class ScratchPostgres:
    """A PostgreSQL cluster of the test's own, run as `postgres` when the tests run as root (initdb refuses root)."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.as_user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
        if self.as_user:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run(
            [self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            **self.as_user,  # type: ignore[arg-type]
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        command = [self.bin / "postgres", "-D", self.data, "-p", str(self.port), "-k", self.root]
        command += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "synchronous_commit=on"]
        with (self.root / "postgres.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, **self.as_user)  # type: ignore[call-overload]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", connect_timeout=2
                ):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError((self.root / "postgres.log").read_text()[-2000:])

    def crash(self) -> None:
        """Immediate shutdown by the postmaster's PID (SIGQUIT): no checkpoint; the restart recovers from WAL."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGQUIT)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)  # fast shutdown
            self.process.wait(timeout=30)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres") as connection:
            return connection.execute(sql).fetchall()

    def rows(self) -> dict[str, dict[str, Any]]:
        found = self.query("SELECT id, response, member_id FROM prior_notifications")
        return {row[0]: {"response": row[1], "member_id": row[2]} for row in found}


@pytest.fixture
def scratch_postgres(tmp_path) -> Iterator[ScratchPostgres]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        from tests.databases import unreachable

        unreachable("PostgreSQL binaries", FileNotFoundError("/usr/lib/postgresql/*/bin"))
    # As root the cluster runs as `postgres`, who cannot enter pytest's private temporary folder.
    root = Path(tempfile.mkdtemp(prefix="lbp-pg-")) if os.geteuid() == 0 else tmp_path / "postgres"
    root.mkdir(exist_ok=True)
    cluster = ScratchPostgres(bin_dir, root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if root != tmp_path / "postgres":
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    acknowledged: dict[str, Any] = field(default_factory=dict)  # record id -> what was acknowledged
    feedback: list[str] = field(default_factory=list)  # the card uuid of each feedback answered 200

    def saw(self, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


def refused_well(tally: Tally, answer: requests.Response, typed: dict[str, str] | None) -> bool:
    """A refusal must be 503 with Retry-After (the form's page with what was typed); else it is a problem."""
    if answer.status_code != 503 or not answer.headers.get("Retry-After", "").isdigit():
        tally.problem(f"refused {answer.status_code} (Retry-After {answer.headers.get('Retry-After')})")
        return False
    if typed is not None:
        page = unescape(answer.text)
        kept = all(f'value="{value}"' in page for name, value in typed.items() if name.startswith("member-"))
        if not kept or "NOT filed" not in page:
            tally.problem("the form's refusal page lost what was typed")
    return True


def submit_json(base: str, body: dict[str, Any], tally: Tally, delay: float) -> None:
    """Send until acknowledged (201), then once more: the resend must be recognised (200, the same record)."""
    time.sleep(delay)
    deadline = time.monotonic() + DEADLINE_SECONDS
    first: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        try:
            answer = requests.post(base + RESPONSES, json=body, timeout=20)
        except requests.RequestException as error:
            tally.problem(f"JSON: {type(error).__name__}")
            return
        tally.saw(answer.status_code)
        if answer.status_code in (200, 201):
            if first is None:
                first = answer.json()
                with tally.lock:
                    tally.acknowledged[first["id"]] = first
                continue  # the resend
            if answer.status_code != 200 or answer.json()["id"] != first["id"]:
                tally.problem("a resend of an acknowledged JSON submission was not recognised")
            return
        if not refused_well(tally, answer, None):
            return
        time.sleep(0.3)
    tally.problem("a JSON submission was never acknowledged")


def submit_form(base: str, link: str, typed: dict[str, str], tally: Tally, delay: float) -> None:
    time.sleep(delay)
    deadline = time.monotonic() + DEADLINE_SECONDS
    first: str | None = None
    while time.monotonic() < deadline:
        try:
            answer = requests.post(base + link, data=typed, allow_redirects=False, timeout=20)
        except requests.RequestException as error:
            tally.problem(f"form: {type(error).__name__}")
            return
        tally.saw(answer.status_code)
        if answer.status_code == 303:
            record_id = answer.headers["Location"].rsplit("/", 1)[1]
            if first is None:
                first = record_id
                with tally.lock:
                    tally.acknowledged[record_id] = typed
                continue
            if record_id != first:
                tally.problem("a resend of an acknowledged form was stored again")
            return
        if not refused_well(tally, answer, typed):
            return
        time.sleep(0.3)
    tally.problem("a form submission was never acknowledged")


def send_feedback(base: str, card: dict[str, Any], tally: Tally, delay: float) -> None:
    """Feedback under the same outage: answered 200 only once stored, else 503 with Retry-After."""
    time.sleep(delay)
    deadline = time.monotonic() + DEADLINE_SECONDS
    body = {"feedback": [feedback_item(card, accept=False)]}
    while time.monotonic() < deadline:
        try:
            answer = requests.post(f"{base}{APPOINTMENT_BOOK}/feedback", json=body, timeout=20)
        except requests.RequestException as error:
            tally.problem(f"feedback: {type(error).__name__}")
            return
        tally.saw(answer.status_code)
        if answer.status_code == 200:
            with tally.lock:
                tally.feedback.append(card["uuid"])
            return
        if not refused_well(tally, answer, None):
            return
        time.sleep(0.3)
    tally.problem("feedback was never acknowledged")


def test_every_acknowledged_prior_notification_survives_a_database_crash(tmp_path, scratch_postgres):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(
        tmp_path, port, CDS_DATABASE_URL=scratch_postgres.url, CDS_CLINICAL_DATE=TODAY.isoformat(), CDS_THREADS="8"
    )
    migrate_database(env)
    log = tmp_path / "server.log"
    with server(env, log) as process:
        wait_for_service(base, process, log)
        links, cards_issued = [], []
        for index in range(SUBMISSIONS_PER_KIND):
            request = adult_with_lbp().appointment_book(appointment(aid=f"apt-{index}"))
            cards = requests.post(base + APPOINTMENT_BOOK, json=request, timeout=20).json()["cards"]
            cards_issued += cards
            urls = [link["url"] for card in cards for link in card.get("links", [])]
            links.append(urlsplit(next(url for url in urls if "/prior-notification/form/" in url)).path)
        tally = Tally()
        with ThreadPoolExecutor(max_workers=2 * SUBMISSIONS_PER_KIND) as pool:
            futures = [
                pool.submit(
                    submit_json,
                    base,
                    response_json(f"pj{n}", **{"member-id": f"J{n:04d}"}),
                    tally,
                    2 * n * STAGGER_SECONDS,
                )
                for n in range(SUBMISSIONS_PER_KIND)
            ]
            futures += [
                pool.submit(
                    submit_form,
                    base,
                    link,
                    completed_fields(**{"member-id": f"F{n:04d}"}),
                    tally,
                    (2 * n + 1) * STAGGER_SECONDS,
                )
                for n, link in enumerate(links)
            ]
            futures += [
                pool.submit(send_feedback, base, card, tally, n * STAGGER_SECONDS)
                for n, card in enumerate(cards_issued[:SUBMISSIONS_PER_KIND])
            ]
            time.sleep(CRASH_AFTER_SECONDS)  # some acknowledged before the crash
            scratch_postgres.crash()
            time.sleep(OUTAGE_SECONDS)
            scratch_postgres.start()
            for future in futures:
                future.result()
        stored = scratch_postgres.rows()
        process.send_signal(signal.SIGTERM)  # a graceful stop: each worker stores the issued-card records it holds
        process.wait(timeout=30)
    issued = {row[0] for row in scratch_postgres.query("SELECT card_uuid FROM issued_cards")}
    feedback_stored = Counter(row[0] for row in scratch_postgres.query("SELECT card_uuid FROM feedback"))
    requests_sent = sum(tally.statuses.values())
    refused = tally.statuses[503]
    print(
        f"\ndurability: {requests_sent} requests, {len(tally.acknowledged)} submissions acknowledged, "
        f"{len(stored)} stored, {refused} refused 503; statuses {dict(tally.statuses)}; feedback "
        f"{len(tally.feedback)} acknowledged, {sum(feedback_stored.values())} stored; cards issued "
        f"{len(cards_issued)}, recorded {len(issued & {card['uuid'] for card in cards_issued})}"
    )
    assert not tally.problems, tally.problems[:5]
    assert refused > 0, "the outage refused nothing: it did not happen while submissions were sent"
    assert len(tally.acknowledged) == 2 * SUBMISSIONS_PER_KIND
    assert set(stored) == set(tally.acknowledged)  # each stored once, nothing acknowledged missing
    for record_id, acknowledged in tally.acknowledged.items():
        row = stored[record_id]
        if "resourceType" in acknowledged:  # JSON: the record as acknowledged, byte for byte
            assert json.dumps(row["response"], sort_keys=True) == json.dumps(acknowledged, sort_keys=True)
        else:  # the web form: what was typed
            assert row["member_id"] == acknowledged["member-id"]
    assert all(feedback_stored[card] >= 1 for card in tally.feedback)  # every feedback answered 200 is stored
    assert {card["uuid"] for card in cards_issued} <= issued  # every issued card recorded, across the crash and stop


def test_the_scratch_cluster_is_not_the_machines_server(scratch_postgres):
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", scratch_postgres.port)) == 0
    assert scratch_postgres.port != 5432
