"""Database faults of a failover or a hung worker: classified, cured by a new session, bounded.

Issue 13, findings 4 and 5, at the level of one engine on the real servers. The read-only phase
is made with `SET TRANSACTION READ ONLY` on the test's own session: the shared servers may not be
switched to read-only as a whole (`SET GLOBAL read_only`, `ALTER SYSTEM`), so the whole-server
phase is shown on a private PostgreSQL in tests/faults/test_database_faults.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from tests.conftest import Seeder
from tests.support import WorkerProcess, raw_protocol2_message, task_id_of, worker_env
from worker.broker.task import is_transient
from worker.db.engine import create_db_engine
from worker.db.faults import READ_ONLY, described, fault_cause
from worker.db.migrate import upgrade
from worker.security.hashing import Hasher
from worker.settings import Settings

# Writes nothing, yet a read-only transaction refuses it as a write.
A_WRITE = "DELETE FROM account_reset_outcomes WHERE 1 = 0"
IDLE_S = 1.0
CLI = str(Path(sys.executable).parent / "account-reset")
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


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    for name in ("MAX_RETRIES", "DB_LOCK_TIMEOUT_S", "DB_IDLE_IN_TRANSACTION_TIMEOUT_S"):
        monkeypatch.delenv(f"ACCOUNT_RESET_{name}", raising=False)

    def made(**values: Any) -> Settings:
        return Settings(environment="development", **values)

    return made


def test_finding_4_the_idle_bound_is_below_the_others_lock_retry_budget(
    settings: Callable[..., Settings],
) -> None:
    """Default: 10 s, below the 30 s budget of 6 attempts x 5 s lock timeout."""
    assert settings().idle_in_transaction_timeout_s == 10.0
    # A budget of 2 x 0.5 s: unset, the bound follows it down.
    assert settings(max_retries=1, db_lock_timeout_s=0.5).idle_in_transaction_timeout_s == 0.8
    assert settings(db_idle_in_transaction_timeout_s=29).idle_in_transaction_timeout_s == 29
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_DB_IDLE_IN_TRANSACTION_TIMEOUT_S"):
        settings(db_idle_in_transaction_timeout_s=30)
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_DB_IDLE_IN_TRANSACTION_TIMEOUT_S"):
        settings(db_idle_in_transaction_timeout_s=10, max_retries=0)


def test_finding_5_logs_dead_letters_and_the_probe_name_a_read_only_database(
    redis_url: str, redis_client: redis.Redis, hasher: Hasher, tmp_path: Path
) -> None:
    """Finding 5: the log and the dead letter said only `InternalError`, and the probe
    "healthy". A worker on a SQLite file opened read-only (mode=ro, what a read-only mount
    gives), one retry: the log says "retrying (database is read-only)", the dead letter's
    cause says it, and `account-reset health` says "unhealthy: database is read-only"."""
    path = tmp_path / "accounts.db"
    upgrade(f"sqlite:///{path}")
    seeder = Seeder(f"sqlite:///{path}", hasher)
    accountid = seeder.account().accountid
    seeder.engine.dispose()
    env = worker_env(
        redis_url=redis_url,
        database_url=f"sqlite:///file:{path}?mode=ro&uri=true",
        ACCOUNT_RESET_MAX_RETRIES="1",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="1",
    )
    queue, letters_key = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]
    message = raw_protocol2_message(
        "reset-session-key", {"accountid": accountid, "requester_accountid": accountid}, queue
    )
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    try:
        redis_client.lpush(queue, message)
        command_id = task_id_of(message)
        assert worker.outcomes(redis_client, {command_id})[command_id].code == "internal-error"
        probe = subprocess.run(
            [CLI, "health"], env=env, capture_output=True, text=True, timeout=DEADLINE_S
        )
        listed = subprocess.run(
            [CLI, "failed", "list", "--json"], env=env, capture_output=True, text=True,
            timeout=DEADLINE_S, check=True,
        )  # fmt: skip
    finally:
        worker.stop()
        redis_client.delete(letters_key, env["ACCOUNT_RESET_EVENTS_STREAM"])
    [letter] = [json.loads(line) for line in listed.stdout.splitlines()]
    log = worker.log()
    print(f"\ndead letter: {letter['detail']} ({letter['cause']}); probe: {probe.stderr.strip()}")
    assert (letter["reason"], letter["detail"]) == ("retries-exhausted", "OperationalError")
    assert letter["cause"] == READ_ONLY
    assert "transient fault OperationalError, retrying (database is read-only)" in log
    assert "transient fault OperationalError, retries exhausted (database is read-only)" in log
    assert (probe.returncode, probe.stderr.strip()) == (1, "unhealthy: database is read-only")
