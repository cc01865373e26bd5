"""Alembic environment: the database URL comes from the service settings (CDS_DATABASE_URL).

The service runs migrations with its own connection (config.attributes["connection"]); the `alembic`
command line (alembic.ini at the repository root) gets an engine built from the environment.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from cds_service.settings import Settings
from cds_service.storage.database import make_engine, metadata, resolve_url


def run_with(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = resolve_url(Settings.from_env().database_url)
    context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    engine = make_engine(Settings.from_env().database_url)
    try:
        with engine.begin() as own_connection:
            run_with(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
