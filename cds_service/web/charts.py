"""The analytics charts: Vega-Lite specifications (Altair) rendered to SVG on the server (vl-convert), so the
pages need no script and keep the strict Content-Security-Policy. Each chart comes with a sentence that
describes it for a screen reader; the table beside it holds the same numbers."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import vl_convert
from markupsafe import Markup

WIDTH = 620
LABELS = alt.Axis(labelLimit=320)  # service · topic and EHR names in full
# The SVG's own ARIA roles describe marks one by one; the figure describes the chart as a whole (role=img),
# so they are dropped, with the SVG's fixed size (the stylesheet scales it).
ARIA_ATTRIBUTES = re.compile(r'\s(?:role|aria-[a-z]+)="[^"]*"')
FIXED_SIZE = re.compile(r'^(<svg[^>]*?)\swidth="[^"]*"\sheight="[^"]*"')


def svg(chart: alt.TopLevelMixin) -> Markup:
    # Room on the left: vl-convert measures the axis labels with its own fonts, a browser may draw them wider.
    spec = {**chart.to_dict(), "padding": {"left": 48, "top": 5, "right": 5, "bottom": 5}}
    rendered = vl_convert.vegalite_to_svg(spec)
    rendered = FIXED_SIZE.sub(r"\1", ARIA_ATTRIBUTES.sub("", rendered), count=1)
    return Markup(rendered)  # SVG made by vl-convert from our own data: no markup from users


def values(rows: Sequence[Mapping[str, Any]]) -> alt.Data:
    return alt.Data(values=[dict(row) for row in rows])  # type: ignore[no-untyped-call]


def control_charts(rows: Sequence[Mapping[str, Any]]) -> Markup:
    """Cards per 100 hook calls a day, one panel per service × topic: the rate, its centre line, the 3-sigma
    limits as a band and the days with an alarm as red points."""
    base = alt.Chart().encode(x=alt.X("day:T", title=None))  # the data comes with the layer, split by the facet
    band = base.mark_area(opacity=0.25, color="#7aa6d6").encode(
        y=alt.Y("lower:Q", title="cards per 100 calls"), y2="upper:Q"
    )
    centre = base.mark_line(color="#555", strokeDash=[4, 3]).encode(y="centre:Q")
    rate = base.mark_line(color="#1f4e79", strokeWidth=1.2).encode(y="rate:Q")
    alarm = base.mark_point(color="#b00020", filled=True, size=30).encode(y="rate:Q").transform_filter("datum.alarm")
    layered = alt.layer(band, centre, rate, alarm, data=values(rows)).properties(width=WIDTH, height=110)
    header = alt.Header(labelAngle=0, labelAlign="left", labelAnchor="start", labelOrient="top", labelFontSize=12)
    faceted = layered.facet(row=alt.Row("series:N", title=None, header=header)).resolve_scale(y="independent")
    return svg(faceted)


def stacked_bars(rows: Sequence[Mapping[str, Any]], category: str, title: str) -> Markup:
    """Horizontal bars of shares, stacked by `part` (e.g. accepted, overridden, no feedback)."""
    chart = (
        alt.Chart(values(rows))
        .mark_bar()
        .encode(
            y=alt.Y(f"{category}:N", title=None, sort=None, axis=LABELS),
            x=alt.X("share:Q", title=title, axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("part:N", title=None, sort=None, scale=alt.Scale(scheme="tableau10")),
            order=alt.Order("order:Q"),
        )
        .properties(width=WIDTH - 200)
    )
    return svg(chart)


def interval_chart(rows: Sequence[Mapping[str, Any]], category: str, title: str) -> Markup:
    """A share with its 95 % interval per category (point and rule); small n drawn grey."""
    base = alt.Chart(values(rows)).encode(y=alt.Y(f"{category}:N", title=None, sort=None, axis=LABELS))
    colour = alt.condition("datum.small", alt.value("#999999"), alt.value("#1f4e79"))
    rule = base.mark_rule().encode(x=alt.X("low:Q", title=title, axis=alt.Axis(format="%")), x2="high:Q", color=colour)
    point = base.mark_point(filled=True, size=50).encode(x="share:Q", color=colour)
    return svg(alt.layer(rule, point).properties(width=WIDTH - 200))


def bars(rows: Sequence[Mapping[str, Any]], category: str, value: str, title: str, colour: str | None = None) -> Markup:
    """Counts per category (in the given order), optionally split by colour."""
    encoding: dict[str, Any] = {
        "x": alt.X(f"{category}:N", title=None, sort=None, axis=alt.Axis(labelAngle=0)),
        "y": alt.Y(f"{value}:Q", title=title),
    }
    if colour:
        encoding["color"] = alt.Color(f"{colour}:N", title=None, scale=alt.Scale(scheme="tableau10"))
        encoding["xOffset"] = alt.XOffset(f"{colour}:N")
    return svg(alt.Chart(values(rows)).mark_bar().encode(**encoding).properties(width=WIDTH - 100, height=200))
