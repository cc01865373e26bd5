"""Command-line tools, all through `flask --app wsgi ...`: thin callers of the rooms.

For operators: `db upgrade` (the deploy step before serving), `feedback-report`, `pn-export` (the Prior
Notification records as CSV). For informatics staff: `content validate`, `content diff`.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from cds_service.content.diff import RevisionError, content_at_revision, describe_changes
from cds_service.content.loader import Content, check_content
from cds_service.errors import StorageUnavailable
from cds_service.storage.database import head_revision
from cds_service.storage.prior_notifications import export_csv
from cds_service.storage.report import Key, as_csv, as_text, build_report
from cds_service.wiring import current_services


def init_app(app: Flask) -> None:
    app.cli.add_command(db_commands)
    app.cli.add_command(feedback_report)
    app.cli.add_command(pn_export)
    app.cli.add_command(content_commands)


db_commands = AppGroup("db", help="The database of issued cards, feedback, JWT ids and Prior Notifications.")


@db_commands.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (Alembic) up to the latest revision: run once before serving."""
    storage = current_services().storage
    try:
        storage.migrate()
    except StorageUnavailable as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Database schema is at revision {head_revision()} ({storage.engine.url.render_as_string()}).")


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
    services = current_services()
    rows = build_report(services.storage, first, last, reason_displays(services.current_content()))
    click.echo(as_csv(rows) if as_csv_flag else as_text(rows), nl=False)


def day(value: datetime | None) -> date | None:
    return value.date() if value else None


def reason_displays(content: Content) -> dict[Key, str]:
    """Override reasons sent without a display are shown with the display our cards offered."""
    return {(r["system"], r["code"]): r["display"] for r in content.cards["override_reasons"].values()}


content_commands = AppGroup("content", help="Check the clinical content (guideline_data/) and compare versions of it.")
FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


def content_dir() -> Path:
    return current_services().settings.content_dir


def shown(root: Path) -> str:
    """The folder as the user would type it: relative to where they are, when inside it."""
    relative = os.path.relpath(root.resolve(), Path.cwd())
    return root.resolve().as_posix() if relative.startswith("..") else Path(relative).as_posix()


@content_commands.command("validate")
@click.option("--dir", "directory", type=FOLDER, help="The content folder to check (default: CDS_CONTENT_DIR).")
def validate(directory: Path | None) -> None:
    """Check every file against its schema and the cross-references between them.

    Prints each problem with its file, line and field; the exit status is 1 when there is any.
    """
    root = directory or content_dir()
    content = loaded_or_exit(root)
    click.echo(f"OK: {shown(root)} is valid (content version {content.version}).")


@content_commands.command("diff")
@click.argument("old", required=False, type=FOLDER)
@click.argument("new", required=False, type=FOLDER)
@click.option("--rev", help="Compare with the content as committed at this git revision (e.g. HEAD).")
def diff(old: Path | None, new: Path | None, rev: str | None) -> None:
    """Show what changes for clinicians from OLD to NEW: codes added and removed, card text, policy.

    \b
    flask --app wsgi content diff OLD_DIR NEW_DIR
    flask --app wsgi content diff --rev HEAD [NEW_DIR]   (NEW_DIR defaults to CDS_CONTENT_DIR)
    """
    if rev is not None and new is not None:
        raise click.UsageError("with --rev, give only the new folder (or none)")
    if rev is None and (old is None or new is None):
        raise click.UsageError("give two folders, OLD and NEW, or --rev REVISION")
    with ExitStack() as stack:
        if rev is not None:
            new, label = old or content_dir(), f"{shown(content_dir())} at {rev}"
            try:
                old = stack.enter_context(content_at_revision(content_dir(), rev))
            except RevisionError as error:
                raise click.ClickException(f"cannot read {label}: {error}") from None
        assert old is not None and new is not None
        print_changes(old, new, label if rev is not None else shown(old))


def print_changes(old: Path, new: Path, old_label: str) -> None:
    before, after = loaded_or_exit(old, old_label), loaded_or_exit(new)
    click.echo(f"From {old_label} (version {before.version}) to {shown(new)} (version {after.version}):")
    lines = describe_changes(before, after, old, new)
    click.echo("\n".join(lines) if lines else "No changes to codes, card text, policy, orders or the MSC pages.")


def loaded_or_exit(root: Path, label: str | None = None) -> Content:
    content, problems = check_content(root)
    if content is None:
        for problem in problems:
            click.echo(f"{label or shown(root)}/{problem}")
        click.echo(f"{len(problems)} problem(s): the service will not use this content until they are fixed.")
        raise SystemExit(1)
    return content


@click.command("pn-export")
@with_appcontext
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First day included (UTC), YYYY-MM-DD.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day included (UTC), YYYY-MM-DD.")
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="CSV file to write (default: standard output).",
)
def pn_export(since: datetime | None, until: datetime | None, output: TextIO) -> None:
    """Every Prior Notification filed by spine surgical practices (all EHRs), as CSV, oldest first."""
    first, last = day(since), day(until)
    if first and last and first > last:
        raise click.BadParameter("--since is after --until")
    try:
        written = export_csv(current_services().storage, output, first, last)
    except StorageUnavailable as error:
        raise click.ClickException(error.message) from None
    if output is not sys.stdout:
        click.echo(f"{written} Prior Notification(s) written to {output.name}.", err=True)
