"""Real databases for the storage tests: a temporary SQLite file, or a private schema on PostgreSQL.

PostgreSQL (127.0.0.1:5432, or LBP_TEST_POSTGRES_URL) and Redis (127.0.0.1:6379, or LBP_TEST_REDIS_URL) are
used for real. Unreachable, their tests skip on a developer's machine and FAIL in CI (CI=true).
"""

from __future__ import annotations

import os
import select
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("LBP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LBP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unreachable(what: str, error: Exception) -> None:
    message = f"{what} is unreachable ({type(error).__name__}: {error})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}: CI must run the tests against it", pytrace=False)
    pytest.skip(message)


@contextmanager
def postgres_schema(base_url: str = POSTGRES_URL) -> Iterator[str]:
    """A database URL whose search_path is a fresh schema, dropped afterwards (runs never collide)."""
    schema = f"lbp_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:
        admin.dispose()
        unreachable(f"PostgreSQL at {make_url(base_url).render_as_string()}", error)
    try:
        yield make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/lbp-cds-shared.sqlite3"
    else:
        with postgres_schema() as url:
            yield url


def migrated(url: str) -> str:
    """The database brought to the latest schema, as the deploy step (`db upgrade`) does before serving."""
    from cds_service.storage.database import Storage

    store = Storage(url)
    store.migrate()
    store.close()
    return url


def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        unreachable(f"Redis at {REDIS_URL}", error)
    finally:
        client.close()
    return REDIS_URL


class TcpProxy:
    """A TCP relay in front of PostgreSQL that can be switched off and on: a database that goes down."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones, as a stopped server does."""
        if self._listener:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (b if source is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                for sock in (a, b):
                    self._sockets.discard(sock)
                    sock.close()


class Outage:
    """Makes the service's database unavailable and brings it back. `url` is what the service uses."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.base_url = url
        self.proxy: TcpProxy | None = None
        self._holder: sqlite3.Connection | None = None
        if kind == "postgresql":
            parsed = make_url(url)
            self.proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
            self.proxy.up()
            self.url = parsed.set(port=self.proxy.port).render_as_string(False)
        else:
            # SQLite is "down" while another process holds its write lock; wait little for it.
            self.url = f"{url}?timeout=0.2"

    def down(self) -> None:
        if self.proxy:
            self.proxy.down()
        else:
            self._holder = sqlite3.connect(make_url(self.base_url).database, isolation_level=None)
            self._holder.execute("BEGIN EXCLUSIVE")

    def close(self) -> None:
        """Back up if it was down, then stop the relay (its listening thread included)."""
        self.up()
        if self.proxy:
            self.proxy.down()

    def up(self) -> None:
        if self.proxy:
            self.proxy.up()
        elif self._holder:
            self._holder.execute("ROLLBACK")
            self._holder.close()
            self._holder = None
