"""Shared fixtures: the app, and a client whose every hook response is checked for conformance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from cds_service import create_app
from cds_service.config import Settings
from cds_service.content import load_content

pytest_plugins = ["tests.fhir_server_fixture"]

SCHEMAS = Path(__file__).resolve().parent.parent / "cds_service" / "schemas"
RESPONSE_SCHEMA = Draft202012Validator(json.loads((SCHEMAS / "response.schema.json").read_text()))
BASE_URL = "https://cds.example.org"


@pytest.fixture(scope="session")
def content():
    return load_content()


@pytest.fixture
def settings() -> Settings:
    return Settings(public_base_url=BASE_URL, require_jwt=False)


@pytest.fixture
def app(settings, content):
    return create_app(settings, content=content)


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


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


class Hooks:
    """Calls the services the way an EHR does and checks every answer."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def call(self, service_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.client.post(f"/cds-services/{service_id}", json=body)
        assert response.status_code == 200, response.get_json()
        payload = response.get_json()
        assert_conformant(payload)
        return payload["cards"]

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
