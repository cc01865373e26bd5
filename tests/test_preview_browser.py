"""The /preview page in a real browser (Debian's chromium, driven by Playwright): each example's cards."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright
from werkzeug.serving import make_server

from cds_service.app import create_app
from cds_service.wiring import services_of
from tests.clinical_date import CLOCK
from tests.conftest import private_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parent.parent
INDEX = yaml.safe_load((ROOT / "guideline_data" / "examples" / "index.yaml").read_text())
# Where the screenshots go: LBP_TEST_ARTIFACTS names a folder (e.g. one CI keeps); default: pytest's tmp.
ARTIFACTS_VARIABLE = "LBP_TEST_ARTIFACTS"

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get(ARTIFACTS_VARIABLE)
    if not named:
        return tmp_path_factory.mktemp("artifacts")
    folder = Path(named)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(content, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service on a free local port, as `make run` serves it (development settings)."""
    settings = private_settings(tmp_path_factory.mktemp("preview-server"), require_jwt=False)
    app = create_app(settings, content=content, clock=CLOCK)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join()
    services_of(app).close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser: Browser) -> Page:
    return browser.new_page(viewport={"width": 1360, "height": 1000})


@pytest.fixture(scope="module")
def phone(browser: Browser) -> Iterator[Page]:
    """A phone-sized window (375 px wide) that runs no script."""
    context = browser.new_context(viewport={"width": 375, "height": 740}, java_script_enabled=False)
    yield context.new_page()
    context.close()


def show(page: Page, server: str, example_id: str) -> None:
    """Pick the example in the menu, as an author does (the page reloads with it)."""
    page.goto(f"{server}/preview")
    with page.expect_navigation():
        page.select_option("#example", example_id)
    expect(page.locator("#example")).to_have_value(example_id)
    assert page.url == f"{server}/preview?example={example_id}"  # the example is in the address: bookmarkable


@pytest.mark.parametrize("example", INDEX["examples"], ids=lambda e: e["id"])
def test_each_example_shows_its_cards(page, server, content, example):
    show(page, server, example["id"])
    cards = page.locator("article.card")
    expect(cards).to_have_count(len(example["expected_topics"]))
    assert [cards.nth(i).get_attribute("data-topic") for i in range(cards.count())] == example["expected_topics"]
    raw = json.loads(page.locator("#raw-json").inner_text())
    assert [c["source"]["topic"]["code"] for c in raw["cards"]] == example["expected_topics"]
    if not example["expected_topics"]:
        expect(page.get_by_text("No cards: the EHR shows nothing for this example.")).to_be_visible()
    for index, _topic in enumerate(example["expected_topics"]):
        card = cards.nth(index)
        expect(card.locator(".summary")).to_have_text(raw["cards"][index]["summary"])
        expect(card.locator(".links a").first).to_be_visible()
        # The response, not the card's template, says which suggestions a card carries: one already
        # offered by an earlier card of the same response is left out.
        if raw["cards"][index].get("suggestions"):
            expect(card.locator("details.suggestion summary").first).to_be_visible()


def test_baseline_card_looks_like_an_ehr_sidebar(page, server, content, artifacts):
    show(page, server, "baseline-lbp-referral")
    card = page.locator('article.card[data-topic="msc-evaluation-first"]')
    expect(card).to_have_class("card indicator-warning")
    expect(card.locator(".indicator")).to_have_text("warning")
    expect(card.locator(".detail strong").first).to_contain_text("Medical Spine Center (MSC) evaluation")
    swap = card.locator("summary", has_text="Refer to a Medical Spine Center instead")
    expect(swap).to_be_visible()
    expect(card.get_by_text("delete: Remove the spine surgery referral")).to_be_hidden()
    swap.click()  # shows what accepting it does
    expect(card.get_by_text("delete: Remove the spine surgery referral")).to_be_visible()
    link = card.get_by_role("link", name="MSC patient handout: what to expect")
    expect(link).to_have_attribute("href", f"{server}/msc/handout")
    expect(card.locator("footer")).to_contain_text(f"content {content.version}")
    page.screenshot(path=str(artifacts / "preview-baseline.png"), full_page=True)


@pytest.mark.parametrize("path", ["/preview", "/msc/handout", "/msc/directory"])
def test_pages_are_styled_and_scripted_within_their_content_security_policy(page, server, path):
    """The pages' CSP allows no inline script or style: the browser reports any it had to block."""
    blocked: list[str] = []

    def watch(message) -> None:
        if "Content Security Policy" in message.text:
            blocked.append(message.text)

    page.on("console", watch)
    try:
        page.goto(f"{server}{path}")
        page.wait_for_load_state("load")
        font = page.evaluate("getComputedStyle(document.body).fontFamily")
    finally:
        page.remove_listener("console", watch)
    assert font.startswith("system-ui")  # the stylesheet file applied
    assert not blocked, blocked


BOOKING = "appointment-book-spine-surgeon"


def fits(page: Page) -> bool:
    """Nothing wider than the window: no sideways scrolling."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_bookmarked_example_reads_at_375_px_without_script(phone, server):
    phone.goto(f"{server}/preview?example=baseline-lbp-referral")
    card = phone.locator('article.card[data-topic="msc-evaluation-first"]')
    expect(card.locator(".summary")).to_be_visible()
    assert fits(phone)
    # A suggestion says what accepting it does, with no script.
    actions = card.get_by_text("delete: Remove the spine surgery referral")
    expect(actions).to_be_hidden()
    card.locator("summary", has_text="Refer to a Medical Spine Center instead").click()
    expect(actions).to_be_visible()
    assert fits(phone)


def test_without_script_the_show_button_picks_the_example(phone, server):
    phone.goto(f"{server}/preview")
    show = phone.get_by_role("button", name="Show")
    expect(show).to_be_visible()
    phone.select_option("#example", "opioid-order")
    with phone.expect_navigation():
        show.click()
    assert phone.url == f"{server}/preview?example=opioid-order"
    expect(phone.locator("article.card")).to_have_attribute("data-topic", "opioid-sparing-alternatives")
    assert fits(phone)


def test_the_pn_cards_link_opens_the_examples_prefilled_form(phone, server):
    phone.goto(f"{server}/preview?example={BOOKING}")
    card = phone.locator('article.card[data-topic="prior-notification-required"]')
    expect(card.locator(".detail")).to_contain_text("pre-filled from this booking")
    link = card.get_by_role("link", name="Prior Notification form for this visit", exact=False)
    with phone.context.expect_page() as opened:
        link.click()  # the card's links open a new tab, as in an EHR
    form = opened.value
    form.wait_for_load_state()
    expect(form.get_by_role("heading", level=1)).to_contain_text("Prior Notification")
    expect(form.get_by_text("Preview of the example")).to_be_visible()
    expect(form.get_by_label("Member ID (on the insurance card)")).to_have_value("HP-00012345")
    expect(form.locator("form, button")).to_have_count(0)  # nothing is filed from the preview
    assert fits(form)
    form.close()
