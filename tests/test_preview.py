"""The /preview page: where it is offered, and that it shows what the service answers."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.settings import Settings, SettingsError
from cds_service.storage.database import pn_form_contexts
from cds_service.wiring import services_of
from tests.clinical_date import CLOCK
from tests.conftest import BASE_URL, private_env, private_settings

EXAMPLES = Path(__file__).resolve().parent.parent / "guideline_data" / "examples"


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


BOOKING = "appointment-book-spine-surgeon"


def test_the_pn_cards_link_opens_the_examples_prefilled_form_which_files_nothing(client):
    page = client.get(f"/preview?example={BOOKING}").get_data(as_text=True)
    form_url = f"{BASE_URL}/preview/prior-notification-form?example={BOOKING}"
    assert f'href="{form_url}"' in page  # in the card, as the card says: pre-filled
    raw = json.loads(unescape(re.search(r'<pre id="raw-json"[^>]*>(.*?)</pre>', page, re.S).group(1)))
    [pn_card] = [c for c in raw["cards"] if c["source"]["topic"]["code"] == "prior-notification-required"]
    assert form_url in [link["url"] for link in pn_card["links"]]  # and in the raw response alike
    assert "/prior-notification/form/" not in page  # no link to a form context that was never stored

    form = client.get(form_url.removeprefix(BASE_URL))
    html = form.get_data(as_text=True)
    assert form.status_code == 200 and "Preview of the example" in html
    assert member_number(BOOKING) == "HP-00012345"
    assert 'id="member-id" name="member-id" value="HP-00012345"' in html  # pre-filled from the example
    assert "<form" not in html and "Submit" not in html  # the preview never files anything
    assert form.headers["Content-Security-Policy"].startswith("default-src 'none'")
    with services_of(client.application).storage.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(pn_form_contexts)).scalar() == 0


def member_number(example_id: str) -> str:
    """The member number (identifier of type MB) of the example's coverage."""
    example = json.loads((EXAMPLES / f"{example_id}.json").read_text())
    [coverage] = [e["resource"] for e in example["prefetch"]["coverages"]["entry"]]
    [identifier] = [i for i in coverage["identifier"] if i["type"]["coding"][0]["code"] == "MB"]
    return str(identifier["value"])


def test_an_example_without_a_pn_card_links_no_prefilled_form(client):
    assert client.get("/preview/prior-notification-form?example=baseline-lbp-referral").status_code == 404
    assert client.get("/preview/prior-notification-form?example=msc-done").status_code == 404  # not a booking
    assert client.get("/preview/prior-notification-form?example=no-such-example").status_code == 404
    assert client.get("/preview/prior-notification-form").status_code == 404


def test_the_chosen_example_is_in_the_address_and_an_unknown_one_is_said_so(client):
    chosen = client.get("/preview?example=opioid-order").get_data(as_text=True)
    assert '<option value="opioid-order" selected>' in chosen
    assert "<title>Oxycodone selected for an adult with low back pain · Card preview" in chosen
    unknown = client.get("/preview?example=nothing-like-it")
    page = unknown.get_data(as_text=True)
    assert unknown.status_code == 404 and "There is no example with that name" in page
    assert "nothing-like-it" not in page and "<select" in page


def test_suggestions_are_readable_without_script(client):
    page = client.get("/preview?example=baseline-lbp-referral").get_data(as_text=True)
    assert "<summary>Refer to a Medical Spine Center instead</summary>" in page
    assert "delete: Remove the spine surgery referral" in page
    assert "hidden" not in page.split('<div class="suggestions">')[1].split("</div>")[0]
