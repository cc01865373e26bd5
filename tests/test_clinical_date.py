"""The clinical today is the date in the program's time zone (CDS_PROGRAM_TIMEZONE), never the host's."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from cds_service.app import create_app
from cds_service.pipeline.clock import SystemClock
from cds_service.settings import Settings, SettingsError
from cds_service.wiring import services_of
from hooks.policy import Suspension
from tests.builders import ortho_referral, patient
from tests.conftest import Hooks, private_settings, topics

CHICAGO = ZoneInfo("America/Chicago")
# 21:30 in Minnesota on 9 March 2026 is already 03:30 on 10 March in UTC.
EVENING_BEFORE = datetime(2026, 3, 10, 3, 30, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
BORN = "2008-03-10"  # 18 on 10 March 2026


def hooks_at(settings, content, instant: datetime, policy_changes=None) -> Hooks:
    if policy_changes:
        policy = replace(content.knowledge.policy, **policy_changes)
        content = replace(content, knowledge=replace(content.knowledge, policy=policy))
    clock = SystemClock(CHICAGO, instant=lambda: instant)
    return Hooks(create_app(settings, content=content, clock=clock).test_client())


def test_evening_before_the_eighteenth_birthday_on_a_utc_host_is_still_seventeen(settings, content):
    hooks = hooks_at(settings, content, EVENING_BEFORE)
    assert hooks.select(patient(None, birth_date=BORN).with_lbp().order_select(ortho_referral())) == []


def test_the_morning_of_the_eighteenth_birthday_is_in_scope(settings, content):
    hooks = hooks_at(settings, content, NEXT_MORNING)
    body = patient(None, birth_date=BORN).with_lbp().order_select(ortho_referral())
    assert topics(hooks.select(body)) == ["msc-evaluation-first"]


def test_a_suspension_starting_tomorrow_in_minnesota_is_not_yet_in_force_on_a_utc_host(settings, content):
    starts = Suspension(start=date(2026, 3, 10), end=None, notice="Suspended from 10 March.")
    evening = hooks_at(settings, content, EVENING_BEFORE, {"suspensions": (starts,)})
    [card] = evening.select(patient(45).with_lbp().order_select(ortho_referral()))
    assert card["indicator"] == "warning"
    morning = hooks_at(settings, content, NEXT_MORNING, {"suspensions": (starts,)})
    assert (
        "Suspended from 10 March." in morning.select(patient(45).with_lbp().order_select(ortho_referral()))[0]["detail"]
    )


def test_system_clock_reads_the_instant_in_the_program_zone():
    assert SystemClock(CHICAGO, instant=lambda: EVENING_BEFORE).today() == date(2026, 3, 9)
    assert SystemClock(ZoneInfo("UTC"), instant=lambda: EVENING_BEFORE).today() == date(2026, 3, 10)


def test_the_service_clock_uses_the_configured_zone(tmp_path):
    settings = private_settings(tmp_path, require_jwt=False, program_timezone="Pacific/Kiritimati")
    app = create_app(settings)
    try:
        clock = services_of(app).clock
        assert isinstance(clock, SystemClock) and clock.zone == ZoneInfo("Pacific/Kiritimati")
    finally:
        services_of(app).close()


def test_program_timezone_defaults_to_chicago():
    assert Settings.from_env({}).program_timezone == "America/Chicago"


def test_an_unknown_time_zone_stops_start_up_with_a_plain_message():
    with pytest.raises(SettingsError, match="CDS_PROGRAM_TIMEZONE='Mars/Olympus': not an IANA time zone"):
        Settings.from_env({"CDS_PROGRAM_TIMEZONE": "Mars/Olympus"})
