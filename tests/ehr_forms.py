"""One clinical case in two forms: everything prefetched, or nothing prefetched and the data on the EHR's
FHIR server (the real test server, tests/fhir_server_fixture.py), fetched by search and by reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cds_service.app import create_app
from cds_service.wiring import services_of
from tests.builders import PatientRecordBuilder, with_fhir_server
from tests.clinical_date import CLOCK
from tests.conftest import Hooks
from tests.fhir_server_fixture import FhirTestServer

TOKEN = "forms-token"
FORMS = ("prefetch", "fallback")


class Ehr:
    """Calls a service the way an EHR that prefetches (or one that does not) would."""

    def __init__(self, hooks: Hooks, server: FhirTestServer) -> None:
        self.hooks = hooks
        self.server = server

    def cards(
        self,
        form: str,
        record: PatientRecordBuilder,
        request: Callable[[PatientRecordBuilder], dict[str, Any]],
        hook: str = "select",
    ) -> list[dict[str, Any]]:
        body = request(record)
        if form == "fallback":
            self.server.load(record.resources())
            with_fhir_server(body, self.server.base_url, TOKEN)
        return getattr(self.hooks, hook)(body)

    def fetched(self) -> list[str]:
        """The URLs the service asked the FHIR server for (GETs)."""
        return [r["url"] for r in self.server.requests_log() if r["method"] == "GET"]


@pytest.fixture
def ehr(fresh_fhir_server, settings, content):
    fresh_fhir_server.require_token(TOKEN)
    configured = settings.model_copy(update=dict(fhir_allowlist=(fresh_fhir_server.base_url,), fhir_budget_ms=3000))
    app = create_app(configured, content=content, clock=CLOCK)
    yield Ehr(Hooks(app.test_client()), fresh_fhir_server)
    services_of(app).close()
