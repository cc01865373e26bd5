"""Shared fixtures: the app, and a client whose every hook response is checked for conformance.

Also the suite's guards: every app a test builds keeps its files under pytest's temporary folder
(`private_settings`), judges calls as of the suite's clinical date (tests/clinical_date.py), and no file
appears in the checkout during a run (`checkout_stays_clean`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.servicerequest import ServiceRequest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from cds_service import app as app_module
from cds_service import wiring
from cds_service.app import create_app
from cds_service.content.loader import load_content
from cds_service.settings import Settings
from cds_service.storage.database import Storage
from cds_service.wiring import AppServices, services_of
from tests import crd_profile
from tests.clinical_date import CLOCK
from tests.databases import Outage, database, migrated

pytest_plugins = ["tests.fhir_server_fixture", "tests.ehr_forms"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = REPO_ROOT / "cds_service" / "pipeline" / "schemas"
RESPONSE_SCHEMA = Draft202012Validator(json.loads((SCHEMAS / "response.schema.json").read_text()))
BASE_URL = "https://cds.example.org"
# Folders that tools (pip, npm, ruff, mypy, Python) keep in a checkout: not the tests' doing.
TOOL_FOLDERS = (".venv/", "node_modules/", ".mypy_cache/", ".ruff_cache/", "__pycache__/")
# Fixtures that start an external process: a test using one must carry the `processes` marker.
PROCESS_FIXTURES = frozenset({"fhir_server"})


def untracked_files() -> set[str] | None:
    """Every file of the checkout git does not track, ignored ones included (None outside a git checkout)."""
    command = ["git", "ls-files", "--others", "-z", *(f"--exclude={folder}" for folder in TOOL_FOLDERS)]
    try:
        listed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {name for name in listed.decode().split("\0") if name}


@pytest.fixture(scope="session", autouse=True)
def checkout_stays_clean() -> Iterator[None]:
    """Fails the run naming every file that appeared in the checkout: tests write under tmp_path only."""
    before = untracked_files()
    yield
    after = untracked_files()
    if before is None or after is None:
        return
    new = sorted(after - before)
    assert not new, "the tests wrote into the checkout (write under tmp_path instead):\n" + "\n".join(new)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`pytest -m "not processes"` must start no external process: the fixtures that do need the marker."""
    unmarked = [
        item.nodeid
        for item in items
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("processes") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests that start processes lack @pytest.mark.processes: " + ", ".join(unmarked))


def private_settings(tmp_path: Path, **values: Any) -> Settings:
    """Settings whose files stay under tmp_path: a migrated SQLite database and the state folder (the last
    good content), unless `values` name others."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if "database_url" not in values:
        values["database_url"] = migrated(f"sqlite:///{tmp_path}/lbp-cds.sqlite3")
    values.setdefault("state_dir", tmp_path / "state")
    return Settings(**values)


def private_env(tmp_path: Path) -> dict[str, str]:
    """The same for a server process configured by its environment (the database still to be migrated)."""
    return {"CDS_DATABASE_URL": f"sqlite:///{tmp_path}/lbp-cds.sqlite3", "CDS_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture(scope="session")
def content():
    return load_content()


@pytest.fixture(autouse=True)
def apps_are_closed(monkeypatch) -> Iterator[list[AppServices]]:
    """Every app a test starts is closed after it (its writer thread, pools and connections), as the server's
    worker does when it stops, whether or not the test closes it itself."""
    started: list[AppServices] = []

    def build_and_remember(*args: Any, **kwargs: Any) -> AppServices:
        services = wiring.build_services(*args, **kwargs)
        started.append(services)
        return services

    monkeypatch.setattr(app_module, "build_services", build_and_remember)
    yield started
    for services in started:
        services.close()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return private_settings(tmp_path, public_base_url=BASE_URL, require_jwt=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The storage tests run against both: an SQLite file and a private schema on the PostgreSQL server."""
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def outage(request, tmp_path):
    """A database of either kind, and the means to take it down and bring it back."""
    with database(request.param, tmp_path) as url:
        broken = Outage(request.param, migrated(url))
        yield broken
        broken.close()


@pytest.fixture
def postgres_outage(tmp_path):
    """A PostgreSQL database that can be taken down (a locked SQLite file still reads: some cases need this one)."""
    with database("postgresql", tmp_path) as url:
        broken = Outage("postgresql", migrated(url))
        yield broken
        broken.close()


@pytest.fixture
def app(settings, content):
    app = create_app(settings, content=content, clock=CLOCK)
    yield app
    services_of(app).close()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def store(database_url) -> Iterator[Storage]:
    """A migrated Storage on a database of each kind (database_url)."""
    store = Storage(database_url)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def stored_app(settings, content, database_url):
    """The app on a migrated database of each kind (database_url): for the storage tests."""
    app = create_app(
        settings.model_copy(update=dict(database_url=migrated(database_url))), content=content, clock=CLOCK
    )
    yield app
    services_of(app).close()


def assert_conformant(response: dict[str, Any]) -> None:
    """CDS Hooks 2.0 response rules (our strict schema), unique uuids, valid FHIR in suggestions."""
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in RESPONSE_SCHEMA.iter_errors(response)]
    assert not errors, errors
    uuids = [c["uuid"] for c in response["cards"]]
    uuids += [s["uuid"] for c in response["cards"] for s in c.get("suggestions", [])]
    assert len(uuids) == len(set(uuids)), "card and suggestion uuids must be unique"
    for card in response["cards"]:
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if action["type"] == "create":
                    ServiceRequest.model_validate(action["resource"])
    for action in response.get("systemActions", []):
        assert_coverage_information_action(action)


def assert_coverage_information_action(action: dict[str, Any]) -> None:
    """A Da Vinci CRD Coverage Information system action: valid FHIR, one extension per its profile."""
    resource = action["resource"]
    assert resource["resourceType"] in crd_profile.CONTEXTS
    [extension] = crd_profile.coverage_information(resource)
    assert crd_profile.problems(extension) == []
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # R4B: fhir.resources has no R4
    except ValidationError as invalid:
        # The resource is the EHR's own, changed only by the extension (CRD resp-37): what the EHR sent
        # wrong in elements the rules never read (a fuzzer's mutations) is echoed, never made by us.
        ours = ("extension", resource["extension"].index(extension))
        assert not [e for e in invalid.errors() if tuple(e["loc"][:2]) == ours], invalid
        sent = {**resource, "extension": [e for e in resource["extension"] if e is not extension]}
        if not sent["extension"]:
            del sent["extension"]
        with pytest.raises(ValidationError):
            get_fhir_model_class(resource["resourceType"]).model_validate(sent)


class Hooks:
    """Calls the services the way an EHR does and checks every answer."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def call(self, service_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self.answer(service_id, body)["cards"]

    def answer(self, service_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The whole checked response: cards and systemActions."""
        response = self.client.post(f"/cds-services/{service_id}", json=body)
        assert response.status_code == 200, response.get_json()
        payload: dict[str, Any] = response.get_json()
        assert_conformant(payload)
        return payload

    def book(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self.call("lbp-appointment-book", body)

    def select(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self.call("lbp-referral-select", body)

    def sign(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self.call("lbp-referral-sign", body)

    def view(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self.call("lbp-patient-view", body)


@pytest.fixture
def hooks(client) -> Hooks:
    return Hooks(client)


def topics(cards: list[dict[str, Any]]) -> list[str]:
    return [card["source"]["topic"]["code"] for card in cards]
