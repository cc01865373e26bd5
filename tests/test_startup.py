"""Starting the service as deployed: settings refused in one line, workers that boot and are replaced
while the database is down, and the issued-card records a stopping worker still holds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select

from cds_service.storage.database import issued_cards
from tests.clinical_date import EXAMPLES_AS_OF
from tests.databases import database
from tests.tokens import FORM_KEY, ISSUER, SigningKey, bearer, jwks, make_key, token_for
from tests.topology import migrate_database
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((ROOT / "guideline_data/examples/baseline-lbp-referral.json").read_text())
SERVICE = "/cds-services/lbp-referral-select"
START_SECONDS = 40
pytestmark = pytest.mark.processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(tmp_path: Path, port: int, **variables: str) -> dict[str, str]:
    """What a deployment sets: development JWT settings, state and metrics under tmp_path."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        "CDS_REQUIRE_JWT": "false",
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.sqlite3'}",
        "CDS_STATE_DIR": str(tmp_path / "state"),
        "CDS_CLINICAL_DATE": EXAMPLES_AS_OF.isoformat(),  # the bundled example is written as of that date
        "CDS_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "TMPDIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        **variables,
    }


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


SERVER = [sys.executable, "-m", "cds_service.web.server"]  # what `lbp-cds serve` and `make run` run
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


@contextmanager
def server(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The production server (granian, cds_service/web/server.py), stopped with SIGTERM after."""
    with log.open("wb") as output:
        process = subprocess.Popen(SERVER, cwd=ROOT, env=env, stderr=output)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_service(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until discovery answers (readiness may be 503 on purpose); fail early if the server stops."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server stopped (exit {process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/cds-services", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    pytest.fail(f"the server did not answer in {START_SECONDS}s:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("CDS_TRUSTED_ISSUERS", '{"https://ehr.example.org": {"jwks_url": "https://e/k"}}', "CDS_TRUSTED_ISSUERS"),
        ("CDS_DATABASE_URL", "postgresql+psycopg://lbp@db.example.org:54x2/lbp", "CDS_DATABASE_URL"),
        ("CDS_FHIR_BUDGET_MS", "fast", "CDS_FHIR_BUDGET_MS"),
        ("CDS_THREADS", "0", "CDS_THREADS"),
        ("CDS_STAFF_SESSION_SECRET", "too short", "CDS_STAFF_SESSION_SECRET"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "db upgrade"])
def test_a_misconfigured_variable_stops_start_up_with_one_line_naming_it(tmp_path, variable, value, named, command):
    env = service_env(tmp_path, free_port(), **{variable: value})
    result = run(SERVER if command == "serve" else [*FLASK, "db", "upgrade"], env)
    if command == "db upgrade" and variable == "CDS_THREADS":
        assert result.returncode == 0, result.stderr  # a server variable: the migration does not read it
        return
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("lbp-cds: invalid setting:")]
    assert len(problems) == 1, result.stderr
    assert named in problems[0]
    assert "Traceback" not in result.stderr
    assert "Spawning worker" not in result.stderr  # stopped before any worker started


def test_a_worker_booted_while_the_database_is_down_serves_hook_calls(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"  # nothing listens there
    env = service_env(tmp_path, port, CDS_DATABASE_URL=dead)
    log = tmp_path / "server.log"
    with server(env, log) as process:
        wait_for_service(base, process, log)
        answer = requests.post(base + SERVICE, json=EXAMPLE, timeout=10)
        assert answer.status_code == 200
        assert [card["source"]["topic"]["code"] for card in answer.json()["cards"]] == ["msc-evaluation-first"]
        ready = requests.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"content": "ok", "database": "unreachable"}
        assert ready.json()["hookCalls"] == "answered"
        feedback = requests.post(f"{base}{SERVICE}/feedback", json=feedback_for(answer.json()), timeout=10)
        assert feedback.status_code == 503 and feedback.headers["Retry-After"]


def feedback_for(response: dict) -> dict:
    card = response["cards"][0]
    entry = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": "2026-11-26T10:00:00Z",
    }
    return {"feedback": [entry]}


def worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def worker_alive(pid: int) -> bool:
    """Running still: a killed worker is a zombie (its sockets closed) until the main process reaps it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def jwt_variables(base: str, key: SigningKey) -> dict[str, str]:
    """JWTs required, the replay store the (dead) database, the EHR's key pinned: nothing is fetched."""
    issuers = {ISSUER: {"jwks": jwks(key)}}
    return {
        "CDS_REQUIRE_JWT": "true",
        "CDS_PUBLIC_BASE_URL": base,
        "CDS_TRUSTED_ISSUERS": json.dumps(issuers),
        "CDS_FORM_SIGNING_KEY": FORM_KEY.get_secret_value(),
    }


@pytest.mark.parametrize("jwt_required", [False, True], ids=["no-jwt", "jwt-replay-store-in-the-database"])
@pytest.mark.parametrize("replaced_by", ["SIGHUP", "a worker's crash"])
def test_workers_replaced_during_a_database_outage_keep_the_instance_serving(tmp_path, replaced_by, jwt_required):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    key = make_key("ES384")
    extra = jwt_variables(base, key) if jwt_required else {}
    env = service_env(tmp_path, port, CDS_DATABASE_URL=dead, **extra)
    log = tmp_path / "server.log"

    def hook_call(token: str | None = None) -> requests.Response:
        token = token or token_for(key, SERVICE, aud=base + SERVICE)
        headers = bearer(token) if jwt_required else {}
        return requests.post(base + SERVICE, json=EXAMPLE, headers=headers, timeout=30)  # a worker may be booting

    with server(env, log) as process:
        wait_for_service(base, process, log)
        # Every worker serving (a worker listens only once it has built the app): the instance as it runs.
        wait_for(lambda: log.read_text().count("Started worker-") == 2, timeout=START_SECONDS, message="2 workers")
        before = worker_pids(process.pid)
        if replaced_by == "SIGHUP":
            process.send_signal(signal.SIGHUP)  # graceful reload: each worker replaced, the new one first
        else:
            crashed = min(before)
            os.kill(crashed, signal.SIGKILL)  # the server respawns a worker that died
            wait_for(lambda: not worker_alive(crashed), message="the killed worker gone")

        def answers(count: int) -> list[int]:
            statuses = []
            for _ in range(count):  # each new connection may reach a worker that has just been replaced
                try:
                    statuses.append(hook_call().status_code)
                except requests.ConnectionError:
                    statuses.append(0)
            return statuses

        statuses = answers(20)
        if replaced_by != "SIGHUP":  # the replacement serving: from then on every call is answered
            wait_for(lambda: log.read_text().count("Started worker-") == 3, timeout=START_SECONDS, message="respawn")
            after_respawn = answers(10)
        wait_for_service(base, process, log)
        assert process.poll() is None, log.read_text()[-3000:]
        token = token_for(key, SERVICE, aud=base + SERVICE)
        assert hook_call(token).status_code == 200
        if jwt_required:
            ready = requests.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["hookCalls"] == "answered"
        assert worker_pids(process.pid) - before, "no worker was replaced"
    if replaced_by == "SIGHUP":
        assert set(statuses) == {200}, statuses
    else:
        # Connections that arrive in the instant a worker's socket leaves or joins the port's SO_REUSEPORT group
        # (the killed worker's, its replacement's) may be reset, without net.ipv4.tcp_migrate_req=1
        # (docs/operators/serving.md); the others are answered, and all once the replacement serves.
        assert set(statuses) <= {0, 200} and statuses.count(0) <= 3, statuses
        assert after_respawn == [200] * 10, after_respawn


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_stopping_worker_stores_the_issued_cards_it_still_holds(tmp_path, kind):
    with database(kind, tmp_path) as url:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = service_env(tmp_path, port, CDS_DATABASE_URL=url, WEB_CONCURRENCY="1")
        migrate_database(env)
        log = tmp_path / "server.log"
        with server(env, log) as process:
            wait_for_service(base, process, log)
            uuids = [
                requests.post(base + SERVICE, json=EXAMPLE, timeout=10).json()["cards"][0]["uuid"] for _ in range(5)
            ]
            process.send_signal(signal.SIGTERM)  # at once: the writer may still hold the last records
            process.wait(timeout=30)
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                stored = set(connection.execute(select(issued_cards.c.card_uuid)).scalars())
        finally:
            engine.dispose()
    assert set(uuids) <= stored


def test_invalid_content_without_a_last_good_copy_stops_the_instance_with_json_lines_only(tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "policy.yaml").write_text("not: [valid\n")
    # One worker: granian's crash-loop check forgets a worker's last start whenever it restarts another, so
    # with two workers dying in turn it took 2-63 s to stop (docs/operators/serving.md), beyond run()'s 60 s.
    env = service_env(tmp_path, free_port(), CDS_CONTENT_DIR=str(content), CDS_LOG_FORMAT="json", WEB_CONCURRENCY="1")
    result = run(SERVER, env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and all(line.startswith("{") for line in lines), lines[:10]
    messages = [json.loads(line)["message"] for line in lines]
    assert any("is invalid and no earlier version was saved" in message for message in messages)
    assert "Worker crash loop detected, exiting" in messages
