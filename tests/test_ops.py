"""Operations: liveness and readiness probes, Prometheus metrics, one structured log line per call."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cds_service.app import create_app
from cds_service.wiring import services_of
from tests.builders import ortho_referral, patient
from tests.clinical_date import CLOCK, EXAMPLES_AS_OF
from tests.conftest import private_env
from tests.databases import Outage, database
from tests.topology import migrate_database
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((ROOT / "guideline_data/examples/baseline-lbp-referral.json").read_text())


def sample(client, name: str, **labels: str) -> float:
    """The current value of one metric sample (0 when it has not been touched)."""
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_healthz_says_the_process_is_up_and_its_release(client):
    response = client.get("/healthz")
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert response.status_code == 200 and response.get_json() == {"status": "ok", "version": release}


def test_readyz_checks_content_and_database(client, content):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "checks": {"content": "ok", "database": "ok"},
        "contentVersion": content.version,
    }


@pytest.fixture
def postgres_outage(tmp_path):
    """PostgreSQL behind a relay that can be cut (an SQLite file cannot become unreachable)."""
    with database("postgresql", tmp_path) as url:
        broken = Outage("postgresql", url)
        yield broken
        broken.close()


def test_readyz_is_503_while_the_database_is_unreachable(settings, content, postgres_outage):
    """Not ready, naming the database; hook calls are still answered (the body says so)."""
    outage = postgres_outage
    app = create_app(settings.model_copy(update=dict(database_url=outage.url)), content=content, clock=CLOCK)
    outage.down()
    try:
        response = app.test_client().get("/readyz")
    finally:
        outage.up()
        services_of(app).close()
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "unreachable"
    assert response.get_json()["hookCalls"] == "answered"


def test_readyz_is_503_while_the_schema_is_not_at_this_release(settings, content, tmp_path):
    app = create_app(
        settings.model_copy(update=dict(database_url=f"sqlite:///{tmp_path}/new.sqlite3")), content=content
    )
    try:
        response = app.test_client().get("/readyz")
    finally:
        services_of(app).close()
    assert response.status_code == 503
    assert "db upgrade" in response.get_json()["checks"]["database"]


def test_metrics_count_hook_calls_cards_and_errors(client):
    service = "lbp-referral-select"
    before_cards = sample(client, "lbp_cards_issued_total", service=service, topic="msc-evaluation-first")
    before_ok = sample(client, "lbp_hook_call_seconds_count", service=service, status="200")
    before_bad = sample(client, "lbp_hook_call_seconds_count", service=service, status="400")
    client.post(f"/cds-services/{service}", json=patient(45).with_lbp().order_select(ortho_referral()))
    client.post(f"/cds-services/{service}", json={"hook": "order-select"})
    assert sample(client, "lbp_cards_issued_total", service=service, topic="msc-evaluation-first") == before_cards + 1
    assert sample(client, "lbp_hook_call_seconds_count", service=service, status="200") == before_ok + 1
    assert sample(client, "lbp_hook_call_seconds_count", service=service, status="400") == before_bad + 1


def test_metrics_count_feedback_by_topic(client):
    body = patient(45).with_lbp().patient_view()
    card = client.post("/cds-services/lbp-patient-view", json=body).get_json()["cards"][0]
    services_of(client.application).issued_cards.flush()
    labels = {"service": "lbp-patient-view", "topic": "physical-therapy-first-line", "outcome": "overridden"}
    before = sample(client, "lbp_feedback_total", **labels)
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00Z"}
    assert client.post("/cds-services/lbp-patient-view/feedback", json={"feedback": [item]}).status_code == 200
    assert sample(client, "lbp_feedback_total", **labels) == before + 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """lbp-cds under its production server (granian, cds_service/web/server.py): 2 workers, JSON logs on stderr.

    Its database and state folder are under tmp_path; it judges calls as of the bundled examples' date,
    the requests the tests send it.
    """
    port = free_port()
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CDS_")},
        **private_env(tmp_path),
        "CDS_REQUIRE_JWT": "false",
        "CDS_CLINICAL_DATE": EXAMPLES_AS_OF.isoformat(),
        "CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "CDS_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "TMPDIR": str(tmp_path),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    migrate_database(env)
    log = tmp_path / "server.log"
    stderr = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "cds_service.web.server"], cwd=ROOT, env=env, stderr=stderr)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}: " + log.read_text()[-2000:])
        try:
            return requests.get(f"{base}/readyz", timeout=2).status_code == 200
        except requests.RequestException:  # not listening yet, or a worker still booting
            return False

    try:
        wait_for(ready, timeout=40, message="the server answering /readyz", interval=0.1)
    except AssertionError:
        proc.kill()
        pytest.fail("the server did not become ready: " + log.read_text()[-2000:])
    yield base, log
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    stderr.close()


@pytest.mark.processes
def test_metrics_add_up_every_worker(server):
    base, _log = server
    session = requests.Session()
    for _ in range(30):
        assert session.post(f"{base}/cds-services/lbp-referral-select", json=EXAMPLE).status_code == 200
    for _ in range(3):  # whichever worker answers /metrics, it reports all of them
        text = requests.get(f"{base}/metrics").text  # a new connection: may reach the other worker
        cards = [
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "lbp_cards_issued_total" and s.labels["topic"] == "msc-evaluation-first"
        ]
        assert sum(cards) == 30


def hook_call_lines(log: Path) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "hook_call"]


@pytest.mark.processes
def test_one_json_log_line_per_hook_call_without_secrets(server):
    base, log = server
    body = json.loads(json.dumps(EXAMPLE))
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = {
        "access_token": "very-secret-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "lbp-cds",
    }
    assert requests.post(f"{base}/cds-services/lbp-referral-select", json=body).status_code == 200
    calls = wait_for(lambda: hook_call_lines(log), message="the hook call's log line")
    assert len(calls) == 1
    call = calls[0]
    assert call["service"] == "lbp-referral-select" and call["status"] == 200
    assert call["hookInstance"] == EXAMPLE["hookInstance"]
    assert call["topics"] == ["msc-evaluation-first"] and call["ms"] > 0
    assert "very-secret-token" not in log.read_text()


@pytest.mark.processes
def test_with_json_logs_the_servers_own_start_up_lines_are_json_too(server):
    _base, log = server
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert not [line for line in lines if not line.startswith("{")], lines[:5]
    messages = [json.loads(line)["message"] for line in lines]
    assert any(message.startswith("Listening at: http://127.0.0.1:") for message in messages)
    assert sum(message.startswith("Spawning worker") for message in messages) == 2
