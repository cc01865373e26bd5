"""Operator commands: `flask --app wsgi db-upgrade` and `flask --app wsgi feedback-report`."""

from __future__ import annotations

from datetime import date, datetime

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from cds_service.content import Content
from cds_service.report import Key, as_csv, as_text, build_report
from cds_service.storage import Storage, head_revision


def register(app: Flask) -> None:
    app.cli.add_command(db_upgrade)
    app.cli.add_command(feedback_report)


def storage() -> Storage:
    return current_app.extensions["lbp_storage"]


@click.command("db-upgrade")
@with_appcontext
def db_upgrade() -> None:
    """Apply the database migrations (Alembic) up to the latest revision."""
    storage().migrate()
    click.echo(f"Database schema is at revision {head_revision()} ({storage().engine.url.render_as_string()}).")


@click.command("feedback-report")
@with_appcontext
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First day included (UTC), YYYY-MM-DD.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day included (UTC), YYYY-MM-DD.")
@click.option("--csv", "as_csv_flag", is_flag=True, help="Write CSV instead of a text table.")
def feedback_report(since: datetime | None, until: datetime | None, as_csv_flag: bool) -> None:
    """Per service and card topic: cards issued, accepted, overridden, acceptance rate, top override reasons."""
    first, last = day(since), day(until)
    if first and last and first > last:
        raise click.BadParameter("--since is after --until")
    rows = build_report(storage(), first, last, reason_displays(current_app.extensions["lbp_content"]))
    click.echo(as_csv(rows) if as_csv_flag else as_text(rows), nl=False)


def day(value: datetime | None) -> date | None:
    return value.date() if value else None


def reason_displays(content: Content) -> dict[Key, str]:
    """Override reasons sent without a display are shown with the display our cards offered."""
    return {(r["system"], r["code"]): r["display"] for r in content.cards["override_reasons"].values()}
