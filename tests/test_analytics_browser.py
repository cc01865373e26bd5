"""The analytics dashboard in a real browser (Debian's chromium, driven by Playwright) on demo data: every page
shows its charts, axe-core finds no violation, the Content-Security-Policy is never violated, and the seeded
topic's stopped-firing alarm is there to read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect
from werkzeug.serving import make_server

from cds_service.app import create_app
from cds_service.wiring import services_of
from tests.clinical_date import CLOCK, TODAY
from tests.conftest import private_settings
from tests.test_pn_form_browser import artifacts, axe_violations, page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.processes
PAGES = ("", "/outcomes", "/overrides", "/timing", "/versions")
YEAR = f"from={TODAY - timedelta(days=364)}&to={TODAY}"


@pytest.fixture(scope="module")
def server(content, tmp_path_factory) -> Iterator[str]:
    """`make run`'s development settings, the database filled by `demo-data`."""
    settings = private_settings(tmp_path_factory.mktemp("analytics-browser"), require_jwt=False)
    app = create_app(settings, content=content, clock=CLOCK)
    result = app.test_cli_runner().invoke(args=["demo-data"])
    assert result.exit_code == 0, result.output
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join()
    services_of(app).close()


@pytest.fixture
def csp_violations(page: Page) -> Iterator[list[str]]:  # noqa: F811 (the page fixture)
    found: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            found.append(message.text)

    page.on("console", watch)
    yield found
    page.remove_listener("console", watch)


@pytest.mark.parametrize("path", PAGES)
def test_every_analytics_page_renders_its_charts_without_axe_or_csp_violations(
    page: Page,  # noqa: F811
    server: str,
    csp_violations: list[str],
    artifacts,  # noqa: F811
    path: str,
) -> None:
    page.goto(f"{server}/analytics{path}?{YEAR}")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    charts = page.locator("figure.chart > [role=img]")
    assert charts.count() >= 1
    for index in range(charts.count()):
        chart = charts.nth(index)
        assert chart.get_attribute("aria-label")
        box = chart.locator("svg").bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 50  # drawn, not an empty element
    assert page.locator("table").count() >= 1
    assert axe_violations(page) == [], path
    assert csp_violations == [], path
    page.screenshot(path=str(artifacts / f"analytics{path.replace('/', '-') or '-firing'}.png"), full_page=True)


def test_the_stopped_topic_is_shown_and_a_comment_is_marked_read(page: Page, server: str, csp_violations) -> None:  # noqa: F811
    page.goto(f"{server}/analytics?{YEAR}")
    alarms = page.get_by_role("table", name="Alarms")
    expect(alarms.get_by_role("row").filter(has_text="stopped firing")).to_contain_text(
        "lbp-referral-sign · opioid-sparing-alternatives"
    )
    page.get_by_role("link", name="Overrides and comments").click()
    unread = page.get_by_text("unread in this period")
    before = int(unread.inner_text().split(";")[-1].split()[0])
    page.get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Mark the checked comments read").click()
    expect(page.get_by_text(f"{before - 1} unread in this period")).to_be_visible()
    assert csp_violations == []
