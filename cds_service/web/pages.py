"""Pages that card links point at: the MSC patient handout and the MSC directory."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from markdown_it import MarkdownIt

from cds_service.wiring import current_services

blueprint = Blueprint("pages", __name__)
# Handout Markdown is written by staff, but still rendered without raw HTML.
markdown = MarkdownIt("commonmark", {"html": False})


@blueprint.get("/msc/handout")
def handout() -> str:
    content = current_services().current_content()
    return render_template("handout.html", body=markdown.render(content.handout_markdown))


@blueprint.get("/msc/directory")
def directory() -> tuple[str, int]:
    """The directory, of one region when asked; a region the directory does not have is said so (404), with
    every center listed."""
    current = current_services().current_content().directory
    asked = request.args.get("region")
    region = current.region(asked)
    unknown = bool(asked) and region is None
    centers = [c for c in current.centers if region is None or c["region"] == region.id]
    names = {r.id: r.name for r in current.regions}
    page = render_template(
        "directory.html",
        notice=current.notice,
        region=region,
        regions=current.regions,
        centers=centers,
        names=names,
        unknown_region=unknown,
    )
    return page, 404 if unknown else 200
