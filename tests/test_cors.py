"""CORS for browser-based CDS clients: discovery, services and feedback; origins by configuration."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from cds_service.app import create_app
from cds_service.settings import TrustedIssuer
from tests.clinical_date import CLOCK
from tests.tokens import FORM_KEY, ISSUER, JWKS_URL

EHR = "https://ehr.example.org"
ENDPOINTS = ["/cds-services", "/cds-services/lbp-referral-select", "/cds-services/lbp-referral-select/feedback"]


def preflight(client, path: str, origin: str = EHR):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def production(settings, **changes):
    issuers = MappingProxyType({ISSUER: TrustedIssuer(ISSUER, (JWKS_URL,))})
    return settings.model_copy(
        update=dict(require_jwt=True, trusted_issuers=issuers, form_signing_key=FORM_KEY, **changes)
    )


@pytest.mark.parametrize("path", ENDPOINTS)
def test_development_allows_any_origin(client, path):
    response = preflight(client, path)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_production_allows_no_origin_unless_configured(settings, content, path):
    client = create_app(production(settings), content=content, clock=CLOCK).test_client()
    assert "Access-Control-Allow-Origin" not in preflight(client, path).headers


@pytest.mark.parametrize("path", ENDPOINTS)
def test_configured_origins_only(settings, content, path):
    client = create_app(production(settings, cors_origins=(EHR,)), content=content, clock=CLOCK).test_client()
    response = preflight(client, path)
    assert response.headers["Access-Control-Allow-Origin"] == EHR
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Origin" not in preflight(client, path, "https://evil.example.net").headers


def test_a_refused_call_is_readable_by_the_browser(settings, content):
    client = create_app(production(settings, cors_origins=(EHR,)), content=content, clock=CLOCK).test_client()
    response = client.post("/cds-services/lbp-referral-select", json={}, headers={"Origin": EHR})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == EHR
    assert "WWW-Authenticate" in response.headers["Access-Control-Expose-Headers"]


def test_pages_are_not_cross_origin(client):
    assert "Access-Control-Allow-Origin" not in client.get("/msc/handout", headers={"Origin": EHR}).headers
