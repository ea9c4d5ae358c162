"""Database faults of a failover or a hung worker: classified, cured by a new session, bounded.

Issue 13, findings 4 and 5, at the level of one engine on the real servers. The read-only phase
is made with `SET TRANSACTION READ ONLY` on the test's own session: the shared servers may not be
switched to read-only as a whole (`SET GLOBAL read_only`, `ALTER SYSTEM`), so the whole-server
phase is shown on a private PostgreSQL in tests/faults/test_database_faults.py; a worker on a
read-only database in tests/e2e/test_database_faults_on_a_worker.py.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from tests.support.seeding import Seeder
from worker.broker.task import is_transient
from worker.db.engine import create_db_engine
from worker.db.faults import READ_ONLY, described, fault_cause
from worker.security.hashing import Hasher

# Writes nothing, yet a read-only transaction refuses it as a write.
A_WRITE = "DELETE FROM account_reset_outcomes WHERE 1 = 0"
IDLE_S = 1.0
DEADLINE_S = 60.0


def backend_session_id(connection: Connection) -> int:
    if connection.dialect.name == "postgresql":
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    return int(connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())


def test_finding_5_read_only_is_transient_named_in_words_and_its_session_discarded(
    server_database_url: str,
) -> None:
    """Finding 5: a write in a read-only session (PostgreSQL 25006, MariaDB 1792) was an
    `InternalError` dead-lettered at once, and its session went back to the pool to fail
    again. Now: transient, "database is read-only", and the next use gets a new session."""
    engine = create_db_engine(server_database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            first = backend_session_id(connection)
            connection.rollback()
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            with pytest.raises(DBAPIError) as caught:
                connection.exec_driver_sql(A_WRITE)
        assert fault_cause(caught.value) == READ_ONLY
        assert described(caught.value).endswith(": database is read-only")
        assert is_transient(caught.value)
        assert caught.value.connection_invalidated
        with engine.begin() as connection:
            assert backend_session_id(connection) != first
            connection.exec_driver_sql(A_WRITE)  # a fresh, writable session
    finally:
        engine.dispose()


def test_finding_4_an_idle_transaction_is_cut_off_and_its_row_lock_freed(
    server_database_url: str, hasher: Hasher
) -> None:
    """Finding 4: a frozen worker's transaction held its row lock for as long as it was frozen
    (60 s). With a 1 s idle bound the server ends it: another session takes the lock within its
    5 s lock timeout, and the frozen one's next statement fails as a transient fault."""
    seeder = Seeder(server_database_url, hasher)
    accountid = seeder.account().accountid
    frozen = create_db_engine(
        server_database_url, pool_size=1, idle_in_transaction_timeout_s=IDLE_S
    )
    other = create_db_engine(server_database_url, pool_size=1, lock_timeout_s=5.0)
    lock = text("SELECT accountid FROM accounts WHERE accountid = :a FOR UPDATE")
    try:
        with frozen.connect() as holder:
            holder.execute(lock, {"a": accountid})
            started = time.monotonic()
            with other.begin() as waiter:
                waiter.execute(lock, {"a": accountid})
            waited_s = time.monotonic() - started
            with pytest.raises(DBAPIError) as caught:
                holder.exec_driver_sql("SELECT 1")
        assert waited_s < 5.0
        assert is_transient(caught.value)
        print(f"\nidle bound {IDLE_S} s: lock freed after {waited_s:.1f} s;"
              f" the resumed session got {described(caught.value)}")  # fmt: skip
    finally:
        frozen.dispose()
        other.dispose()
        seeder.engine.dispose()
