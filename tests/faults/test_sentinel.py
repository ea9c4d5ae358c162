"""Redis Sentinel for real (issue 13, finding 1): a worker on a `sentinel://` URL, a
`SENTINEL FAILOVER` mid-stream, every command applied once and every event published.

Replication is asynchronous, so a failover loses the writes the old master acknowledged between
the replica's promotion and its own demotion, which Sentinel orders only at its next look at it
(INFO every 10 s): about 11 s here, in which the producer, the worker and its events publisher,
still connected to the old master, go on using it. Measured: the commands sent then were
consumed there and applied (the database has them), and their events were lost. Those are
found from the producer's side (a command with no event on the new master), resent under the
same command_id, and counted; a resent command that had been applied is only replayed (the
recorded outcome, under its first event_id).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from client.events import stream_outcomes, wait_for_outcomes
from client.raw_message import task_id_of
from client.redis_clients import RedisOptions, redis_client
from tests.faults.harness import CommandStream
from tests.faults.sentinels import MASTER_NAME, SentinelGroup
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess, worker_env
from worker.db.models import OutcomeRecord
from worker.security.hashing import Hasher

COMMANDS = 300
ACCOUNTS = 60
BATCH = 10
# Commands sent and not yet answered: the producer keeps sending through the failover.
BACKLOG = 40
PRODUCER_DEADLINE_S = 180.0
# How long the stream may stay short of an event before its command counts as lost by Redis:
# past a redelivery (visibility timeout 10 s, restore sweep every 1 s) and a retry or two.
QUIET_S = 30.0


@pytest.fixture
def sentinels() -> Iterator[SentinelGroup]:
    """Replication as Redis ships it (asynchronous, no `min-replicas-to-write`)."""
    with SentinelGroup() as group:
        yield group


def _produce(commands: CommandStream, client: redis.Redis, errors: list[str]) -> None:
    """The producer, through Sentinel, all along the failover: a batch whenever the backlog
    (sent less events) is under BACKLOG. A push or read that failed is tried again: it was never
    acknowledged, so that is not a resend of a lost write."""
    deadline = time.monotonic() + PRODUCER_DEADLINE_S
    sent = 0
    while sent < len(commands.messages):
        if time.monotonic() > deadline:
            raise AssertionError(f"the producer sent {sent} within {PRODUCER_DEADLINE_S} s")
        try:
            if sent - client.xlen(commands.stream) < BACKLOG:
                client.rpush(commands.queue, *commands.messages[sent : sent + BATCH])
                sent += BATCH
            else:
                time.sleep(0.02)  # the producer's pace, bounded by the deadline
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as error:
            errors.append(type(error).__name__)  # a ResponseError: READONLY, NOREPLICAS


def test_a_sentinel_failover_mid_stream_applies_every_command_once(
    sentinels: SentinelGroup, postgres_url: str, hasher: Hasher, tmp_path: Path
) -> None:
    """Finding 1: 300 reset-session-key commands over 60 accounts, sent all along (40 in hand at
    most), `SENTINEL FAILOVER` after the first 100 events: each applied exactly once, each with
    events under one event_id; writes the old master acknowledged and lost are resent, counted."""
    seeder = Seeder(postgres_url, hasher)
    env = worker_env(
        redis_url=sentinels.url,
        database_url=postgres_url,
        ACCOUNT_RESET_SENTINEL_MASTER=MASTER_NAME,
        ACCOUNT_RESET_VISIBILITY_TIMEOUT_S="10",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="4",
        ACCOUNT_RESET_MAX_RETRIES="10",
        ACCOUNT_RESET_RESTORE_INTERVAL_S="1",
    )
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    commands = CommandStream.plan(seeder, worker, accounts=ACCOUNTS, count=COMMANDS)
    producer = redis_client(sentinels.url, RedisOptions(sentinel_master=MASTER_NAME))
    producer_errors: list[str] = []
    sending = threading.Thread(target=_produce, args=(commands, producer, producer_errors))
    try:
        sending.start()
        commands.wait_for_progress(producer, COMMANDS // 3)
        old_port, new_port = sentinels.fail_over()
        failed_over_at = producer.xlen(commands.stream)
        sending.join()
        ids = set(commands.account_of)
        with contextlib.suppress(TimeoutError):  # what is still missing is counted below
            wait_for_outcomes(producer, commands.stream, ids, timeout_s=QUIET_S)
        # On the new master: an event read from the old one before it was demoted may be gone.
        published = {e.command_id for e in stream_outcomes(producer, commands.stream)}
        missing = [m for m in commands.messages if task_id_of(m) not in published]
        recorded = _recorded(seeder, {task_id_of(m) for m in missing})
        if missing:
            producer.rpush(commands.queue, *missing)  # the producer's resend, same command_ids
        figures = commands.verify(seeder, producer, "Sentinel failover mid-stream")
    finally:
        worker.stop()
        seeder.engine.dispose()
        commands.delete(producer)
        producer.close()
    log = worker.log()
    print(
        f"failover {old_port} -> {new_port}: resent {len(missing)} (events lost by Redis"
        f" {len(recorded)}, commands lost by Redis {len(missing) - len(recorded)}), producer"
        f" calls refused during the failover {len(producer_errors)}, events before the"
        f" failover ended {failed_over_at},"
        f" dead letters {log.count('dead-lettered')}"
    )
    assert figures["applied"] == COMMANDS
    assert "dead-lettered" not in log
    assert "Unrecoverable error" not in log


def _recorded(seeder: Seeder, command_ids: set[str]) -> set[str]:
    """Those of `command_ids` the database has an outcome for (applied; their event lost)."""
    if not command_ids:
        return set()
    with seeder.sessions() as session:
        query = sa.select(OutcomeRecord.command_id).where(OutcomeRecord.command_id.in_(command_ids))
        return set(session.scalars(query))
