"""The database: migrations, start-up, the replay table and the db upgrade command (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select

from cds_service.settings import SettingsError
from cds_service.storage import database as storage_module
from cds_service.storage.database import IssuedCard, Storage, head_revision, jwt_replay, metadata

REPO = Path(__file__).resolve().parent.parent


def test_migrations_create_exactly_the_tables_the_code_uses(store):
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()
    assert {"issued_cards", "feedback", "jwt_replay"} <= set(inspect(store.engine).get_table_names())


def test_workers_starting_together_migrate_once(database_url):
    stores = [Storage(database_url) for _ in range(4)]
    errors: list[BaseException] = []

    def start(store: Storage) -> None:
        try:
            store.migrate()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with stores[0].engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()
    for store in stores:
        store.close()


def test_default_sqlite_file_is_created_under_var_on_first_start(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_module, "DATA_ROOT", tmp_path)
    store = Storage("sqlite:///var/lbp-cds.sqlite3")
    store.migrate()
    store.close()
    assert (tmp_path / "var" / "lbp-cds.sqlite3").is_file()


def test_unsupported_database_is_refused_with_a_clear_message():
    with pytest.raises(SettingsError, match="mysql is not supported"):
        Storage("mysql://root@127.0.0.1/test")
    with pytest.raises(SettingsError, match="CDS_DATABASE_URL"):
        Storage("not a url")


def test_a_jti_is_remembered_until_it_expires(store):
    now = datetime.now(UTC)
    assert store.first_use("a" * 64, now + timedelta(minutes=5))
    assert not store.first_use("a" * 64, now + timedelta(minutes=5))
    assert store.first_use("b" * 64, now - timedelta(seconds=1))  # already expired when stored
    assert store.first_use("b" * 64, now + timedelta(minutes=5))  # so it may be seen again


def test_expired_jtis_are_cleaned_up(store):
    now = datetime.now(UTC)
    for n in range(5):
        store.first_use(f"{n:064d}", now - timedelta(minutes=1))
    store._next_replay_cleanup = 0.0  # the next use runs the periodic cleanup
    store.first_use("f" * 64, now + timedelta(minutes=5))
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(jwt_replay)).scalar() == 1


def test_db_upgrade_command(tmp_path):
    database = tmp_path / "cli.sqlite3"
    env = {
        **os.environ,
        "CDS_DATABASE_URL": f"sqlite:///{database}",
        "CDS_STATE_DIR": str(tmp_path / "state"),
        "CDS_REQUIRE_JWT": "false",
    }
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"Database schema is at revision {head_revision()}" in result.stdout
    assert database.is_file()


def test_json_columns_keep_what_orjson_cannot_write(store):
    """JSON columns are written by orjson; an integer beyond 64 bits (a submitted form may hold one) is
    written by the standard library instead, and read back the same."""
    table = storage_module.pn_form_contexts
    prefill = {"count": 2**70, "note": "é", "items": [1, 2.5, None]}
    now = datetime.now(UTC)
    row = {
        "id": "ctx-1",
        "patient_id": "p1",
        "prefill": prefill,
        "created_at": now,
        "expires_at": now + timedelta(days=1),
    }
    with store.engine.begin() as connection:
        connection.execute(table.insert(), [row])
    with store.engine.connect() as connection:
        assert connection.execute(select(table.c.prefill)).scalar_one() == prefill


def test_issued_cards_are_stored_as_written_and_a_known_uuid_is_left_alone(store):
    """One statement inserts a batch's cards from a JSON array: every column reads back as the card had it (the
    time in UTC from another zone, absent values as None, the suggestion kinds), and a uuid already stored
    keeps its first row."""
    eastern = timezone(timedelta(hours=-5))
    first = IssuedCard(
        card_uuid="01a245ff-bc77-7c0a-8685-6a77b8aa96ff",
        service_id="lbp-referral-select",
        topic="msc-evaluation-first",
        content_version="v1",
        issued_at=datetime(2026, 11, 26, 8, 30, 15, 123456, tzinfo=eastern),
        hook="order-select",
        issuer="https://ehr.example/issuer",
        tenant='tenant "é"',
        judgement="msc-needed",
        clinician_key="a" * 32,
        clinician_key_id="k1",
        suggestion_kinds={"01a245ff-bc77-78b3-be2f-b8c1724bbd55": "msc-swap"},
    )
    bare = IssuedCard("01a245ff-bc77-7134-adb4-141c90c48c58", "lbp-patient-view", "pt-first", "v1", datetime.now(UTC))
    store.record_issued_cards([first, bare])
    store.record_issued_cards([msgspec.structs.replace(first, topic="changed")])
    table = storage_module.issued_cards
    with store.engine.connect() as connection:
        rows = {row.card_uuid: row._asdict() for row in connection.execute(select(table))}
    assert rows == {card.card_uuid: msgspec.structs.asdict(card) for card in (first, bare)}
    assert rows[first.card_uuid]["issued_at"] == datetime(2026, 11, 26, 13, 30, 15, 123456, tzinfo=UTC)
