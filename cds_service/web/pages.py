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
def directory() -> str:
    current = current_services().current_content().directory
    region = current.region(request.args.get("region"))
    centers = [c for c in current.centers if region is None or c["region"] == region.id]
    names = {r.id: r.name for r in current.regions}
    return render_template(
        "directory.html", notice=current.notice, region=region, regions=current.regions, centers=centers, names=names
    )
