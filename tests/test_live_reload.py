"""Edited content is served without a restart, only once valid; the version shows in discovery and on cards."""

from __future__ import annotations

import json
import logging
import os
import signal
from datetime import date
from pathlib import Path

import pytest
import yaml

from cds_service.app import create_app
from cds_service.content import live as live_content
from cds_service.content.loader import ContentError
from cds_service.pipeline.clock import FixedClock
from tests.conftest import BASE_URL, assert_conformant, private_settings
from tests.content_copies import ContentCopy
from tests.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "guideline_data" / "examples"
AS_OF = date.fromisoformat(yaml.safe_load((EXAMPLES / "index.yaml").read_text())["as_of"])
PT_SUMMARY = "Low back pain: consider physical therapy as first-line care (no PT in the last 90 days)"
EDITED_SUMMARY = "Low back pain: physical therapy first (no PT in the last 90 days)"


class Clock:
    """Stands in for time.monotonic, so a test need not wait for the reload interval."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(live_content, "monotonic", clock)
    return clock


@pytest.fixture
def copy(tmp_path) -> ContentCopy:
    return ContentCopy.of_guideline_data(tmp_path)


def service(copy: ContentCopy, tmp_path: Path, reload_seconds: int = 2, **settings):
    settings = private_settings(
        tmp_path,
        public_base_url=BASE_URL,
        require_jwt=False,
        content_dir=copy.root,
        content_reload_seconds=reload_seconds,
        **settings,
    )
    return create_app(settings, clock=FixedClock(AS_OF)).test_client()


def pt_card(client) -> dict:
    body = json.loads((EXAMPLES / "patient-view-lbp.json").read_text())
    response = client.post("/cds-services/lbp-patient-view", json=body)
    assert response.status_code == 200, response.get_json()
    assert_conformant(response.get_json())
    [card] = response.get_json()["cards"]
    return card


def version(client) -> str:
    return client.get("/cds-services").get_json()["extension"]["lbp-cds-content-version"]


def test_version_in_discovery_and_on_every_card(client, content, settings):
    assert version(client) == content.version
    body = json.loads((EXAMPLES / "patient-view-lbp.json").read_text())
    app = create_app(settings, content=content, clock=FixedClock(AS_OF))
    [card] = app.test_client().post("/cds-services/lbp-patient-view", json=body).get_json()["cards"]
    assert card["source"]["extension"]["lbp-cds-content-version"] == content.version


def test_a_valid_edit_is_served_after_the_interval(copy, tmp_path, clock):
    client = service(copy, tmp_path)
    before = version(client)
    assert pt_card(client)["summary"] == PT_SUMMARY
    copy.replace("cards.yaml", PT_SUMMARY, EDITED_SUMMARY)
    clock.advance(1)
    assert pt_card(client)["summary"] == PT_SUMMARY  # not looked at again yet
    clock.advance(1)
    card = pt_card(client)
    assert card["summary"] == EDITED_SUMMARY
    assert card["source"]["extension"]["lbp-cds-content-version"] == version(client) != before


def test_an_invalid_edit_is_refused_and_the_old_content_kept(copy, tmp_path, clock, caplog):
    client = service(copy, tmp_path)
    before = version(client)
    copy.replace("cards.yaml", PT_SUMMARY, "Low back pain in {regoin}: physical therapy first")
    clock.advance(2)
    with caplog.at_level(logging.ERROR, logger="lbp_cds"):
        card = pt_card(client)
    assert card["summary"] == PT_SUMMARY
    assert version(client) == before
    assert "edited content in" in caplog.text and "refused; still serving version " + before in caplog.text
    assert "field cards > physical-therapy-first-line > summary: unknown placeholder {regoin}" in caplog.text
    # fixed: served at the next look
    copy.replace("cards.yaml", "Low back pain in {regoin}: physical therapy first", EDITED_SUMMARY)
    clock.advance(2)
    assert pt_card(client)["summary"] == EDITED_SUMMARY


def test_the_refusal_is_logged_once_per_edit(copy, tmp_path, clock, caplog):
    client = service(copy, tmp_path)
    copy.replace("cards.yaml", "    indicator: warning\n", "    indicator: critical\n")
    with caplog.at_level(logging.ERROR, logger="lbp_cds"):
        for _ in range(3):
            clock.advance(2)
            pt_card(client)
    assert caplog.text.count("refused; still serving version") == 1


def test_zero_seconds_turns_the_file_check_off(copy, tmp_path, clock):
    client = service(copy, tmp_path, reload_seconds=0)
    copy.replace("cards.yaml", PT_SUMMARY, EDITED_SUMMARY)
    clock.advance(3600)
    assert pt_card(client)["summary"] == PT_SUMMARY


def test_sighup_reloads_at_once(copy, tmp_path):
    client = service(copy, tmp_path, reload_seconds=0)
    before = version(client)
    copy.replace("cards.yaml", PT_SUMMARY, EDITED_SUMMARY)
    os.kill(os.getpid(), signal.SIGHUP)
    wait_for(lambda: version(client) != before, message="the content reloaded after SIGHUP")
    assert pt_card(client)["summary"] == EDITED_SUMMARY


def test_start_up_with_broken_files_serves_the_last_good_content(copy, tmp_path, caplog):
    good = version(service(copy, tmp_path))  # saves the last good copy
    copy.replace("cards.yaml", "    indicator: warning\n", "    indicator: critical\n")
    with caplog.at_level(logging.ERROR, logger="lbp_cds"):
        client = service(copy, tmp_path)
    assert version(client) == good
    assert pt_card(client)["summary"] == PT_SUMMARY
    assert f"serving the last good content (version {good}) until it is fixed" in caplog.text
    assert 'indicator: "critical" is not allowed here' in caplog.text


def test_start_up_with_broken_files_and_no_good_copy_fails_listing_the_problems(copy, tmp_path):
    copy.replace("cards.yaml", "    indicator: warning\n", "    indicator: critical\n")
    with pytest.raises(ContentError) as raised:
        service(copy, tmp_path)
    assert 'field cards > msc-evaluation-first > indicator: "critical" is not allowed here' in str(raised.value)


def test_without_required_content_hook_calls_are_answered_503_until_fixed(copy, tmp_path, clock):
    copy.replace("cards.yaml", "    indicator: warning\n", "    indicator: critical\n")
    settings = private_settings(tmp_path, require_jwt=False, content_dir=copy.root)
    client = create_app(settings, require_content=False, clock=FixedClock(AS_OF)).test_client()
    response = client.get("/cds-services")
    assert response.status_code == 503
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert diagnostics.startswith("The clinical content is invalid and no earlier valid version is available (1 ")
    copy.replace("cards.yaml", "    indicator: critical\n", "    indicator: warning\n")
    clock.advance(2)
    assert pt_card(client)["summary"] == PT_SUMMARY
