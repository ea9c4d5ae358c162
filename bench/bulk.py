"""Bulk revocation runs: many accounts seeded in one appid, then one reset-session-keys run over
them, timed from the first message pushed to the event that ends the run, and checked: every
account's key number moved on exactly once."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import redis
import sqlalchemy as sa

from bench.measure import push
from client.bulk import chunk_payloads
from client.events import follow, read_outcome, stream_end
from client.raw_message import raw_protocol2_message
from schemas import ResetSessionKeys
from worker.db.models import Account

SEED_BATCH = 10_000
RUN_DEADLINE_S = 900.0


def seed_appid(engine: sa.Engine, count: int) -> tuple[str, list[str]]:
    """`count` accounts in a new appid (no password: only the session key is changed); the
    appid and the accountids. PostgreSQL takes them by COPY; the others by batched INSERTs."""
    appid = f"bulk-{uuid.uuid4().hex[:8]}"
    accountids = [f"acct_{secrets.token_hex(8)}" for _ in range(count)]
    now = datetime.now(UTC)
    if engine.dialect.name == "postgresql":
        _copy_accounts(engine, appid, accountids, now)
    else:
        table = cast(sa.Table, Account.__table__)
        with engine.begin() as connection:
            for start in range(0, count, SEED_BATCH):
                batch = accountids[start : start + SEED_BATCH]
                connection.execute(table.insert(), [_row(appid, a, now) for a in batch])
    return appid, accountids


def _row(appid: str, accountid: str, now: datetime) -> dict[str, Any]:
    return {
        "accountid": accountid, "appid": appid, "usernameHash": f"{appid}-{accountid}",
        "sessionKey": secrets.token_hex(32), "sessionKeyNumber": 1,
        "createdAt": now, "updatedAt": now,
    }  # fmt: skip


def _copy_accounts(engine: sa.Engine, appid: str, accountids: list[str], now: datetime) -> None:
    columns = '(accountid, appid, "usernameHash", "sessionKey", "sessionKeyNumber",' \
        ' "createdAt", "updatedAt")'  # fmt: skip
    connection = engine.raw_connection()
    try:
        cursor: Any = connection.cursor()
        with cursor.copy(f"COPY accounts {columns} FROM STDIN") as copy:
            for accountid in accountids:
                copy.write_row((accountid, appid, f"{appid}-{accountid}",
                                secrets.token_hex(32), 1, now, now))  # fmt: skip
        connection.commit()
        # As a live table's would be: without statistics, PostgreSQL plans the first chunks'
        # join as a loop over the whole table (seconds a chunk, until autovacuum analyses).
        cursor.execute("ANALYZE accounts")
        connection.commit()
    finally:
        connection.close()


def reset_counts(engine: sa.Engine, appid: str) -> dict[int | None, int]:
    """How many accounts of the appid have each session key number."""
    query = (
        sa.select(Account.session_key_number, sa.func.count())
        .where(Account.appid == appid)
        .group_by(Account.session_key_number)
    )
    with engine.connect() as connection:
        return {number: int(count) for number, count in connection.execute(query)}


def run_messages(
    appid: str, accountids: list[str] | None, queue: str
) -> tuple[str, list[str], list[str]]:
    """The run's id, its messages, and the command_ids whose events end it (every_account: any
    chunk that says done)."""
    bulk_id = f"bench-{uuid.uuid4().hex[:10]}"
    name = ResetSessionKeys.name
    if accountids is None:
        kwargs = {"every_account": True, "appid": appid, "command_id": bulk_id}
        return bulk_id, [raw_protocol2_message(name, kwargs, queue, task_id=bulk_id)], []
    messages, ids = [], []
    for command_id, payload in chunk_payloads(accountids, bulk_id=bulk_id, requested_by=None):
        kwargs = {**payload, "appid": appid, "command_id": command_id}
        messages.append(raw_protocol2_message(name, kwargs, queue, task_id=command_id))
        ids.append(command_id)
    return bulk_id, messages, ids


def timed_run(
    client: redis.Redis, queue: str, stream: str, run: tuple[str, list[str], list[str]]
) -> float:
    """Seconds from the first push to the run's last event (`client` decodes responses)."""
    bulk_id, messages, awaited = run
    after = stream_end(client, stream)
    started = time.perf_counter()
    push(client, queue, messages)
    for _ in _events_until_done(client, stream, after, bulk_id, set(awaited)):
        pass
    return time.perf_counter() - started


def _events_until_done(
    client: redis.Redis, stream: str, after: str, bulk_id: str, awaited: set[str]
) -> Iterator[None]:
    deadline = time.monotonic() + RUN_DEADLINE_S
    for batch in follow(client, stream, after=after, deadline=deadline, block_ms=200):
        for _entry_id, fields in batch:
            outcome = read_outcome(fields)
            if outcome.bulk is None or outcome.bulk.bulk_id != bulk_id:
                if outcome.command == ResetSessionKeys.name and outcome.code:
                    raise RuntimeError(f"{outcome.command_id} refused: {outcome.code}")
                continue
            awaited.discard(outcome.command_id)
            # A listed run's chunks each say done; it is over once all have answered.
            if outcome.bulk.done and not awaited:
                return
        yield None
    raise TimeoutError(f"bulk run {bulk_id} not over after {RUN_DEADLINE_S} s")
