"""/preview: each bundled example's cards exactly as the service returns them, shown like an EHR sidebar.

For authors: after editing card text or code lists, pick an example and see what clinicians would
see. The cards come from the same code path as a real hook call (pipeline.call), with the example's
clinical "today" (`as_of` in examples/index.yaml), and with the content the service is serving now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, render_template, request
from markupsafe import Markup

from cds_service.content.loader import Content
from cds_service.errors import ClientError
from cds_service.pipeline.call import CallDependencies, answer_hook
from cds_service.web.hook_routes import public_base_url
from cds_service.web.pages import markdown
from cds_service.wiring import AppServices, current_services

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


@blueprint.get("/preview")
def page() -> str:
    services = current_services()
    examples_dir = services.settings.content_dir / "examples"
    as_of, examples = read_index(examples_dir / "index.yaml")
    chosen = next((e for e in examples if e.id == request.args.get("example")), examples[0] if examples else None)
    current = services.content.current
    outcome = run(services, current, examples_dir, chosen, as_of) if chosen and current is not None else Outcome()
    return render_template(
        "preview.html",
        examples=examples,
        chosen=chosen,
        as_of=as_of,
        outcome=outcome,
        topics=[card["source"]["topic"]["code"] for card in outcome.cards],
        version=current.version if current is not None else None,
        refused=list(services.content.problems),
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
    deps = CallDependencies(content, services.fetcher, as_of, public_base_url(services))
    try:
        response = answer_hook(services.registry.get(example.service), body, deps).response()
    except ClientError as error:
        return Outcome(error=f"{error.status}: {error.message}")
    return Outcome(response=response, cards=[with_html(card) for card in response["cards"]])


def with_html(card: dict[str, Any]) -> dict[str, Any]:
    # markdown-it runs with raw HTML off, so its output is safe to insert as it is.
    return {**card, "detail_html": Markup(markdown.render(card.get("detail", "")))}


@blueprint.app_template_filter("pretty_json")
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
