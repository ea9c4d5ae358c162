"""The database engine: one per process, built by the bootstrap."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from worker.db.faults import discards_connection

DATABASE_WAIT_INTERVAL_S = 1.0


# The drivers this project installs, for URLs that name none.
DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def normalized_url(url: str) -> URL:
    """`postgresql://` means psycopg 3, `mysql://` and `mariadb://` PyMySQL, with utf8mb4."""
    parsed = make_url(url)
    parsed = parsed.set(drivername=DEFAULT_DRIVERS.get(parsed.drivername, parsed.drivername))
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def create_db_engine(
    url: str,
    *,
    pool_size: int = 2,
    lock_timeout_s: float = 5.0,
    idle_in_transaction_timeout_s: float | None = None,
) -> Engine:
    """An engine that never prints statement parameters (they hold hashes) in its errors.

    A lock wait past `lock_timeout_s` fails (PostgreSQL's lock_timeout, SQLite's busy
    timeout) as an OperationalError, which the task retries. A transaction of this engine's
    left idle for `idle_in_transaction_timeout_s` (its process frozen, say) is ended by the
    server, which frees its row locks for the other workers: PostgreSQL's
    idle_in_transaction_session_timeout, MariaDB's idle_transaction_timeout (10.3+; MySQL
    has no equivalent, SQLite neither: a frozen process keeps its write lock).
    """
    parsed = normalized_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms=int(lock_timeout_s * 1000))
    options: dict[str, Any] = {}
    if backend in ("mysql", "mariadb"):
        # InnoDB's lock wait is whole seconds. READ COMMITTED, as PostgreSQL's default: a
        # locking read sees the latest commit, and a scan takes no gap locks that would
        # serialise (or deadlock) commands on different accounts.
        wait_s = max(1, round(lock_timeout_s))
        connect_args = {"init_command": f"SET SESSION innodb_lock_wait_timeout = {wait_s}"}
        options["isolation_level"] = "READ COMMITTED"
    else:
        server_options = f"-c lock_timeout={int(lock_timeout_s * 1000)}"
        if idle_in_transaction_timeout_s is not None:
            idle_ms = max(1, int(idle_in_transaction_timeout_s * 1000))
            server_options += f" -c idle_in_transaction_session_timeout={idle_ms}"
        connect_args = {"options": server_options}
    engine = create_engine(
        parsed,
        hide_parameters=True,
        # No ping before each use (a round trip per transaction): a connection the server
        # dropped fails its first statement, SQLAlchemy discards the pool's stale connections,
        # and the task's retry runs on a fresh one.
        pool_pre_ping=False,
        pool_size=pool_size,
        max_overflow=0,
        # MariaDB/MySQL close idle connections after wait_timeout (8 h by default).
        pool_recycle=3600,
        connect_args=connect_args,
        **options,
    )
    if backend in ("mysql", "mariadb") and idle_in_transaction_timeout_s is not None:
        _bound_idle_transactions_on_mariadb(engine, idle_s=idle_in_transaction_timeout_s)
    _discard_connections_that_cannot_serve(engine)
    return engine


def _bound_idle_transactions_on_mariadb(engine: Engine, *, idle_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # A `mysql://` URL may reach a MariaDB and a `mariadb://` one a MySQL: the server says.
        # MySQL has no such bound (its wait_timeout counts only between transactions).
        if "mariadb" in str(dbapi_connection.get_server_info()).lower():
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET SESSION idle_transaction_timeout = {max(1, math.ceil(idle_s))}")
            cursor.close()


def _discard_connections_that_cannot_serve(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _as_disconnect(context: ExceptionContext) -> None:
        # A read-only phase, a failover, a shutdown or an idle cut-off: treated as a lost
        # connection, so SQLAlchemy discards it (and the pool's older ones) and the retry
        # opens a fresh session on whatever server now answers.
        original = context.original_exception
        if original is not None and discards_connection(original):
            context.is_disconnect = True


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
