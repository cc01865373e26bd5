"""/preview: each bundled example's cards exactly as the service returns them, shown like an EHR sidebar.

For authors: after editing card text or code lists, pick an example and see what clinicians would
see. The cards come from the same code path as a real hook call (pipeline.call), with the example's
clinical "today" (`as_of` in examples/index.yaml), and with the content the service is serving now.
The chosen example is in the address (`/preview?example=...`), so a preview can be bookmarked or sent.

A booking's Prior Notification card links the form pre-filled from the booking: here it links
/preview/prior-notification-form?example=..., the same form pre-filled from the example, which files
nothing (the preview never reads or writes the plan's records).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from flask import Blueprint, Response, make_response, render_template, request, url_for
from markupsafe import Markup

from cds_service.content.forms import PN_FORM_ID
from cds_service.content.loader import Content
from cds_service.errors import ClientError
from cds_service.pipeline.call import CallDependencies, answer_hook
from cds_service.storage.prior_notifications import FormContext, Scope
from cds_service.web.hook_routes import public_base_url
from cds_service.web.pages import markdown
from cds_service.web.prior_notification import field_value
from cds_service.web.prior_notification import page as form_page
from cds_service.wiring import AppServices, current_services
from hooks.notifications import PriorNotificationOnFile

blueprint = Blueprint("preview", __name__)


@dataclass(frozen=True)
class Example:
    id: str
    title: str
    service: str
    expected_topics: tuple[str, ...]
    note: str = ""


@dataclass
class Outcome:
    """What the service answered for one example (or why it could not)."""

    response: dict[str, Any] | None = None
    error: str | None = None
    cards: list[dict[str, Any]] = field(default_factory=list)
    form: FormContext | None = None  # the Prior Notification form a card links, pre-filled from the example


class ExampleForms:
    """The preview's stand-in for the plan's Prior Notification records: none on file (as the examples are
    written), and the form a booking's card links kept here, not stored: nothing is filed from the preview."""

    def __init__(self) -> None:
        self.context: FormContext | None = None

    def on_file(self, scope: Scope, patient_id: str, since: date) -> list[PriorNotificationOnFile]:
        return []

    def save_form_context(self, context: FormContext) -> None:
        self.context = context


@blueprint.get("/preview")
def page() -> Response:
    services = current_services()
    examples_dir = services.settings.content_dir / "examples"
    as_of, examples = read_index(examples_dir / "index.yaml")
    asked = request.args.get("example")
    chosen = next((e for e in examples if e.id == asked), None if asked else examples[0] if examples else None)
    current = services.content.current
    outcome = run(services, current, examples_dir, chosen, as_of) if chosen and current is not None else Outcome()
    html = render_template(
        "preview.html",
        examples=examples,
        chosen=chosen,
        as_of=as_of,
        outcome=outcome,
        topics=[card["source"]["topic"]["code"] for card in outcome.cards],
        version=current.version if current is not None else None,
        refused=list(services.content.problems),
        unknown=asked is not None and chosen is None,
    )
    # An example that does not exist is said so (with the menu to pick one), never silently another one.
    return make_response(html, 404 if asked is not None and chosen is None else 200)


@blueprint.get("/preview/prior-notification-form")
def example_form() -> Response:
    """The Prior Notification form a booking example's card links, pre-filled from the example, as the
    practice would open it; it has no submit button (the blank form's printable layout, answers filled in)."""
    services = current_services()
    examples_dir = services.settings.content_dir / "examples"
    as_of, examples = read_index(examples_dir / "index.yaml")
    chosen = next((e for e in examples if e.id == request.args.get("example")), None)
    current = services.content.current
    outcome = run(services, current, examples_dir, chosen, as_of) if chosen and current is not None else Outcome()
    if chosen is None or outcome.form is None:
        return form_page(
            "pn_message.html",
            status=404,
            title="No pre-filled form for this example",
            message="Only a booking example whose card asks for a Prior Notification links a pre-filled form.",
        )
    assert current is not None
    values = {key: field_value(value) for key, value in outcome.form.prefill.items()}
    return form_page(
        "pn_form.html",
        form=current.forms[PN_FORM_ID],
        values=values,
        errors={},
        action=None,
        example=chosen,
        preview_url=url_for("preview.page", example=chosen.id),
    )


def read_index(path: Path) -> tuple[date, list[Example]]:
    index = yaml.safe_load(path.read_text(encoding="utf-8"))
    examples = [
        Example(e["id"], e["title"], e["service"], tuple(e.get("expected_topics") or ()), e.get("note", ""))
        for e in index["examples"]
    ]
    return date.fromisoformat(str(index["as_of"])), examples


def run(services: AppServices, content: Content, examples_dir: Path, example: Example, as_of: date) -> Outcome:
    body = json.loads((examples_dir / f"{example.id}.json").read_text(encoding="utf-8"))
    base = public_base_url(services)
    forms = ExampleForms()
    deps = CallDependencies(content, services.fetcher, as_of, base, forms, services.form_links)
    try:
        response = answer_hook(services.registry.get(example.service), body, deps).response()
    except ClientError as error:
        return Outcome(error=f"{error.status}: {error.message}")
    if forms.context is not None:
        # The card's signed link names a form context the preview kept rather than stored: it links the
        # example's own pre-filled form instead, in the card and in the raw response alike.
        example_form_url = f"{base}/preview/prior-notification-form?{urlencode({'example': example.id})}"
        for card in response["cards"]:
            for link in card.get("links", []):
                if link["url"].startswith(f"{base}/prior-notification/form/"):
                    link["url"] = example_form_url
    return Outcome(response=response, cards=[with_html(card) for card in response["cards"]], form=forms.context)


def with_html(card: dict[str, Any]) -> dict[str, Any]:
    # markdown-it runs with raw HTML off, so its output is safe to insert as it is.
    return {**card, "detail_html": Markup(markdown.render(card.get("detail", "")))}


@blueprint.app_template_filter("pretty_json")
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
