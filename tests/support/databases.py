"""Throwaway databases: one of its own per test or session, on SQLite, PostgreSQL or MariaDB.

`ACCOUNT_RESET_TEST_DATABASE_URL` names a PostgreSQL and `ACCOUNT_RESET_TEST_MARIADB_URL` a
MariaDB (or MySQL) to run the database tests on as well. With
`ACCOUNT_RESET_TEST_REQUIRE_SERVICES=1` (CI), a missing one fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.ids import unique
from tests.support.waiting import poll_until
from worker.db.migrate import upgrade
from worker.dev.databases import scratch_database

REQUIRE_SERVICES = os.environ.get("ACCOUNT_RESET_TEST_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("ACCOUNT_RESET_TEST_DATABASE_URL")
MARIADB_URL = os.environ.get("ACCOUNT_RESET_TEST_MARIADB_URL")
BACKENDS = ["sqlite", "postgresql", "mariadb"]
SCRATCH_PREFIX = "account_reset_test"


def _service_url_or_skip(url: str | None, variable: str, what: str) -> str:
    if url:
        return url
    if REQUIRE_SERVICES:
        pytest.fail(f"{variable} is required when services are required")
    pytest.skip(f"set {variable} to run on {what}")


def postgres_url_or_skip() -> str:
    return _service_url_or_skip(POSTGRES_URL, "ACCOUNT_RESET_TEST_DATABASE_URL", "PostgreSQL")


def mariadb_url_or_skip() -> str:
    return _service_url_or_skip(MARIADB_URL, "ACCOUNT_RESET_TEST_MARIADB_URL", "MariaDB")


@contextmanager
def backend_database(backend: str, directory: Path) -> Iterator[str]:
    """An empty database of its own on `backend`, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / unique('db')}.db"
    else:
        server = postgres_url_or_skip() if backend == "postgresql" else mariadb_url_or_skip()
        with scratch_database(server, prefix=SCRATCH_PREFIX) as url:
            yield url


# Transactions of this database waiting for a lock, as each server reports them.
LOCK_WAITERS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    "mariadb": "SELECT count(*) FROM information_schema.INNODB_TRX t"
    " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
    " WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()",
}
LOCK_WAIT_DEADLINE_S = 30.0
# InnoDB refreshes INNODB_TRX only when it was last read over 0.1 s ago: polled faster, it
# never changes.
LOCK_POLL_INTERVAL_S = 0.15


def backends_waiting_on_locks(engine: sa.Engine) -> int:
    dialect = "postgresql" if engine.dialect.name == "postgresql" else "mariadb"
    with engine.connect() as connection:
        return int(connection.execute(sa.text(LOCK_WAITERS[dialect])).scalar_one())


def wait_until_waiting(engine: sa.Engine, count: int) -> None:
    """Until `count` transactions of this database wait on a row lock."""
    poll_until(
        lambda: backends_waiting_on_locks(engine) >= count,
        LOCK_WAIT_DEADLINE_S,
        f"{count} transactions waiting on the account lock",
        interval_s=LOCK_POLL_INTERVAL_S,
    )


def migrated_sqlite(directory: Path) -> str:
    """The URL of a migrated SQLite database of its own, a file in `directory`."""
    url = f"sqlite:///{directory / unique('accounts')}.db"
    upgrade(url)
    return url
