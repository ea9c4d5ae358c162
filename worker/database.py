"""The database engine: one per process, built by the bootstrap."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

DATABASE_WAIT_INTERVAL_S = 1.0


def normalized_url(url: str) -> URL:
    """A plain `postgresql://` URL means psycopg 3, the driver this project installs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_db_engine(url: str, *, pool_size: int = 2, lock_timeout_s: float = 5.0) -> Engine:
    """An engine that never prints statement parameters (they hold hashes) in its errors.

    A lock wait past `lock_timeout_s` fails (PostgreSQL's lock_timeout, SQLite's busy
    timeout) as an OperationalError, which the task retries.
    """
    parsed = normalized_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms=int(lock_timeout_s * 1000))
    return create_engine(
        parsed,
        hide_parameters=True,
        # No ping before each use (a round trip per transaction): a connection the server
        # dropped fails its first statement, SQLAlchemy discards the pool's stale connections,
        # and the task's retry runs on a fresh one.
        pool_pre_ping=False,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"options": f"-c lock_timeout={int(lock_timeout_s * 1000)}"},
    )


def _sqlite_engine(url: URL, *, busy_timeout_ms: int) -> Engine:
    engine = create_engine(url, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so that BEGIN IMMEDIATE below applies.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # Every command transaction writes; taking the write lock up front serialises them
        # across worker processes instead of failing at the first write.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def wait_for_database(url: str, *, timeout_s: float, on_wait: Callable[[str], None]) -> None:
    """Connect once, retrying until the deadline; says what it waits for (password hidden)."""
    engine = create_db_engine(url)
    shown = normalized_url(url).render_as_string(hide_password=True)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with engine.connect():
                    return
            except OperationalError:
                if time.monotonic() > deadline:
                    raise
                on_wait(f"waiting for the database at {shown}")
                time.sleep(DATABASE_WAIT_INTERVAL_S)
    finally:
        engine.dispose()
