"""Pages that card links point at: the MSC patient handout and the MSC directory."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from markdown_it import MarkdownIt

from cds_service.content import Content

blueprint = Blueprint("pages", __name__)
# Handout Markdown is written by staff, but still rendered without raw HTML.
markdown = MarkdownIt("commonmark", {"html": False})


def content() -> Content:
    return current_app.extensions["lbp_content"]


@blueprint.get("/msc/handout")
def handout() -> str:
    return render_template("handout.html", body=markdown.render(content().handout_markdown))


@blueprint.get("/msc/directory")
def directory() -> str:
    current = content().directory
    region = current.region(request.args.get("region"))
    centers = [c for c in current.centers if region is None or c["region"] == region.id]
    names = {r.id: r.name for r in current.regions}
    return render_template(
        "directory.html", notice=current.notice, region=region, regions=current.regions, centers=centers, names=names
    )
