"""Throwaway databases: one of its own per test or session, on SQLite, PostgreSQL or MariaDB.

The PostgreSQL and MariaDB servers they are made on are found as tests/support/servers.py says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from tests.support.ids import unique
from tests.support.servers import SERVERS
from tests.support.waiting import poll_until
from worker.db.migrate import upgrade
from worker.dev.databases import scratch_database

BACKENDS = ["sqlite", "postgresql", "mariadb"]
SCRATCH_PREFIX = "account_reset_test"


@contextmanager
def backend_database(backend: str, directory: Path) -> Iterator[str]:
    """An empty database of its own on `backend`, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / unique('db')}.db"
    else:
        server = SERVERS.postgres() if backend == "postgresql" else SERVERS.mariadb()
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
