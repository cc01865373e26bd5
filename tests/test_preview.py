"""The /preview page: where it is offered, and that it shows what the service answers."""

from __future__ import annotations

import pytest

from cds_service.app import create_app
from cds_service.settings import Settings, SettingsError
from tests.clinical_date import CLOCK
from tests.conftest import BASE_URL, private_env, private_settings


@pytest.mark.parametrize(
    ("env", "shown"),
    [
        ({}, False),  # production default: JWT required, no preview
        ({"CDS_REQUIRE_JWT": "false"}, True),  # development default
        ({"CDS_PREVIEW_ENABLED": "true"}, True),
        ({"CDS_REQUIRE_JWT": "false", "CDS_PREVIEW_ENABLED": "off"}, False),
    ],
)
def test_preview_is_on_in_development_and_configurable(env, shown, content, tmp_path):
    production = {
        "CDS_PUBLIC_BASE_URL": BASE_URL,
        "CDS_TRUSTED_ISSUERS": '{"https://ehr.example.org": {"jwks_urls": ["https://ehr.example.org/jwks"]}}',
        **private_env(tmp_path),
        "CDS_FORM_SIGNING_KEY": "x" * 32,
    }
    settings = Settings.from_env({**production, **env})
    assert settings.shows_preview is shown
    status = create_app(settings, content=content, clock=CLOCK).test_client().get("/preview").status_code
    assert status == (200 if shown else 404)


def test_reload_interval_setting():
    assert Settings.from_env({}).content_reload_seconds == 2
    assert Settings.from_env({"CDS_CONTENT_RELOAD_SECONDS": "0"}).content_reload_seconds == 0
    with pytest.raises(SettingsError, match="CDS_CONTENT_RELOAD_SECONDS='soon': expected a whole number"):
        Settings.from_env({"CDS_CONTENT_RELOAD_SECONDS": "soon"})


def test_preview_shows_the_example_as_of_its_date(content, tmp_path):
    settings = private_settings(tmp_path, public_base_url=BASE_URL, require_jwt=False)
    client = create_app(settings, content=content, clock=CLOCK).test_client()
    page = client.get("/preview?example=msc-done").get_data(as_text=True)
    # Dated examples only give their cards on their own "today" (the MSC visit is two months before it).
    assert 'data-topic="prior-notification-required"' in page
    assert 'data-topic="msc-evaluation-first"' not in page
    assert "as of 2026-11-26" in page
    assert f'content version <strong id="content-version">{content.version}</strong>' in page
