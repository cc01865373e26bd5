"""Command-line tools: `lbp-cds ...` (the installed entry point) and `flask --app wsgi ...`, thin callers of
the rooms. Each command is written once and offered under both.

For operators: `lbp-cds serve` (granian with the shipped configuration), `lbp-cds migrate` (`flask --app wsgi
db upgrade`: the deploy step before serving), `feedback-report`, `pn-export` (the Prior Notification records as
CSV), `nginx-config` (the shipped nginx configuration), `analytics-retention`. For informatics staff: `content
validate`, `content diff`, `demo-data`. A new operator command is one function decorated with
`@operator_command(...)`: it appears under both `lbp-cds`
and `flask --app wsgi`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, date, datetime
from importlib.resources import files
from pathlib import Path
from typing import TextIO

import click
from flask import Flask
from flask.cli import AppGroup, ScriptInfo, with_appcontext

from cds_service import version
from cds_service.content.diff import RevisionError, content_at_revision, describe_changes
from cds_service.content.loader import Content, check_content
from cds_service.errors import StorageUnavailable
from cds_service.settings import SettingsError, exit_on_settings_error
from cds_service.storage.analytics import enforce_retention
from cds_service.storage.database import head_revision
from cds_service.storage.demo_data import DemoRefused, fill
from cds_service.storage.prior_notifications import export_csv
from cds_service.storage.report import Key, as_csv, as_text, build_report
from cds_service.wiring import current_services

DEMO_CLINICIAN_KEY = "demo-data pseudonyms, never a real clinician's"  # without CDS_CLINICIAN_KEY


def init_app(app: Flask) -> None:
    """The `flask --app wsgi ...` commands."""
    app.cli.add_command(db_commands)
    app.cli.add_command(content_commands)
    for command in SHARED_COMMANDS:
        app.cli.add_command(command)


def operator_app() -> Flask:
    """The application the `lbp-cds` commands run in, built as for the `flask` commands: no JWT settings
    needed, and invalid content reported by the command rather than fatal."""
    from cds_service.app import create_app

    try:
        return create_app(require_content=False, serving=False)
    except SettingsError as error:
        exit_on_settings_error(error)


@click.group("lbp-cds", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), "--version", "-V", prog_name="lbp-cds", message="%(prog)s %(version)s")
@click.pass_context
def main(context: click.Context) -> None:
    """lbp-cds, the low back pain CDS Hooks service. Settings come from the CDS_* environment variables."""
    context.obj = ScriptInfo(create_app=operator_app, set_debug_flag=False, load_dotenv_defaults=False)


# The commands offered under both `lbp-cds` and `flask --app wsgi` (besides `content` and the migration).
SHARED_COMMANDS: list[click.Command] = []


def operator_command(name: str) -> Callable[[Callable[..., None]], click.Command]:
    """A command run in the application's context, as `lbp-cds NAME` and `flask --app wsgi NAME`."""

    def register(function: Callable[..., None]) -> click.Command:
        command = click.command(name)(with_appcontext(function))
        SHARED_COMMANDS.append(command)
        main.add_command(command)
        return command

    return register


# What `lbp-cds serve` runs: granian with the shipped configuration, each worker building the app.
SERVER_MODULE = "cds_service.web.server"


@main.command("serve")
def serve() -> None:
    """Serve the CDS Hooks API with granian and the shipped configuration.

    The address, workers, threads and timeouts come from CDS_BIND, WEB_CONCURRENCY, CDS_THREADS and
    CDS_GRACEFUL_TIMEOUT (docs/operators/serving.md). The process becomes the server's main process (same
    process id), so it gets the service manager's signals: SIGTERM stops gracefully, SIGHUP replaces the
    workers. Migrations are not run here: `lbp-cds migrate` first, once per release.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    # A fresh interpreter: the server's main process never holds the application (each worker builds its own).
    os.execv(sys.executable, [sys.executable, "-m", SERVER_MODULE])


db_commands = AppGroup("db", help="The database of issued cards, feedback, JWT ids and Prior Notifications.")


@db_commands.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (Alembic) up to the latest revision: run once per release, before serving."""
    storage = current_services().storage
    try:
        storage.migrate()
    except StorageUnavailable as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Database schema is at revision {head_revision()} ({storage.engine.url.render_as_string()}).")


def date_range_options(command: Callable[..., None]) -> Callable[..., None]:
    """--since and --until, whole UTC days, for the commands that read records by date."""
    day = click.DateTime(["%Y-%m-%d"])
    since = click.option("--since", type=day, help="First day included (UTC), YYYY-MM-DD.")
    until = click.option("--until", type=day, help="Last day included (UTC), YYYY-MM-DD.")
    return since(until(command))


@operator_command("feedback-report")
@date_range_options
@click.option("--csv", "as_csv_flag", is_flag=True, help="Write CSV instead of a text table.")
def feedback_report(since: datetime | None, until: datetime | None, as_csv_flag: bool) -> None:
    """Per service and card topic: cards issued, accepted, overridden, acceptance rate, top override reasons."""
    first, last = days(since, until)
    services = current_services()
    rows = build_report(services.storage, first, last, reason_displays(services.current_content()))
    click.echo(as_csv(rows) if as_csv_flag else as_text(rows), nl=False)


def days(since: datetime | None, until: datetime | None) -> tuple[date | None, date | None]:
    """The first and last day given (both included), refused when they are the wrong way round."""
    first, last = (since.date() if since else None), (until.date() if until else None)
    if first and last and first > last:
        raise click.BadParameter("--since is after --until")
    return first, last


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
    content diff OLD_DIR NEW_DIR
    content diff --rev HEAD [NEW_DIR]   (NEW_DIR defaults to CDS_CONTENT_DIR)
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


@operator_command("pn-export")
@date_range_options
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="CSV file to write (default: standard output).",
)
def pn_export(since: datetime | None, until: datetime | None, output: TextIO) -> None:
    """Every Prior Notification filed by spine surgical practices (all EHRs), as CSV, oldest first; the dates
    are filing days in the program's time zone (the filed_on column)."""
    first, last = days(since, until)
    try:
        written = export_csv(current_services().storage, output, first, last)
    except StorageUnavailable as error:
        raise click.ClickException(error.message) from None
    if output is not sys.stdout:
        click.echo(f"{written} Prior Notification(s) written to {output.name}.", err=True)


@operator_command("demo-data")
def demo_data() -> None:
    """Fill the configured database with a synthetic year of hook calls, cards and feedback for the analytics
    dashboard (without prompting); refused when it holds cards from a real EHR, its own earlier run replaced."""
    services = current_services()
    try:
        services.storage.migrate()
        reasons = services.current_content().cards["override_reasons"]
        key = services.settings.clinician_key
        pseudonym_key = key.get_secret_value() if key else DEMO_CLINICIAN_KEY
        cards, answered = fill(services.storage, services.clock.today(), reasons, pseudonym_key)
    except (StorageUnavailable, DemoRefused) as error:
        raise click.ClickException(str(getattr(error, "message", error))) from None
    click.echo(f"Demo data written: a year of {cards} issued cards and {answered} feedback entries; see /analytics.")


@operator_command("analytics-retention")
def analytics_retention() -> None:
    """Delete issued-card records, feedback and daily counts older than CDS_ANALYTICS_RETENTION_DAYS (run daily)."""
    services = current_services()
    keep = services.settings.analytics_retention_days
    try:
        pruned = enforce_retention(services.storage, keep, datetime.now(UTC))
    except StorageUnavailable as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Kept the last {keep} days; deleted " + ", ".join(f"{n} {what}" for what, n in pruned.items()) + ".")


# `lbp-cds migrate` is `flask --app wsgi db upgrade`; `lbp-cds content ...` the same group as under flask.
main.add_command(db_upgrade, "migrate")
main.add_command(content_commands)


@main.command("nginx-config")
def nginx_config() -> None:
    """Print the shipped nginx configuration for the reverse proxy in front of `lbp-cds serve`.

    Save it in nginx's configuration (e.g. `lbp-cds nginx-config > /etc/nginx/conf.d/lbp-cds.conf`) and adapt the
    lines marked "site:": the replicas, the host name, the certificate, the access log.
    """
    click.echo((files("cds_service.web") / "nginx" / "lbp-cds.conf").read_text(encoding="utf-8"), nl=False)
