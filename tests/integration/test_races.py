"""Two deliveries of one command_id, racing on PostgreSQL and MariaDB: one applies, both tell
the same."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import redis
import sqlalchemy as sa

from client.events import stream_outcomes
from schemas import CommandOutcome
from tests.support.commands import in_process_processor, reset_session_key
from tests.support.databases import LOCK_WAIT_DEADLINE_S, wait_until_waiting
from tests.support.ids import unique
from tests.support.seeding import Seeder
from worker.db.engine import create_db_engine
from worker.security.hashing import Hasher
from worker.streams.publisher import EventStream


def test_racing_deliveries_of_one_command_id_apply_once(
    server_database_url: str,
    hasher: Hasher,
    events_stream: EventStream,
    redis_client: redis.Redis,
) -> None:
    seeder = Seeder(server_database_url, hasher)
    user = seeder.account()
    engine = create_db_engine(server_database_url, pool_size=4)
    processor = in_process_processor(engine, hasher, events_stream, redis_client)
    command_id = unique("cmd")
    start = threading.Barrier(2, timeout=LOCK_WAIT_DEADLINE_S)

    def deliver() -> CommandOutcome:
        start.wait()
        return reset_session_key(
            processor,
            accountid=user.accountid,
            requester_accountid=user.accountid,
            command_id=command_id,
        )

    # Hold the account's row lock, so both deliveries pass the "already recorded?" check and
    # then wait on the lock: the second to commit must lose on the outcome's primary key.
    with engine.connect() as holder, ThreadPoolExecutor(max_workers=2) as pool:
        transaction = holder.begin()
        holder.execute(
            sa.text("SELECT 1 FROM accounts WHERE accountid = :id FOR UPDATE"),
            {"id": user.accountid},
        )
        deliveries = [pool.submit(deliver) for _ in range(2)]
        wait_until_waiting(engine, 2)
        transaction.commit()
        first, second = (delivery.result(timeout=LOCK_WAIT_DEADLINE_S) for delivery in deliveries)

    assert first == second
    assert seeder.load(user.accountid).session_key_number == 2
    events = stream_outcomes(redis_client, events_stream.stream)
    assert [e.event_id for e in events] == [first.event_id] * 2
    engine.dispose()
    seeder.engine.dispose()
