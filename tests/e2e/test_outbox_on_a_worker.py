"""The outbox relay in a real worker: an event that could not be published while the events
Redis was down gets out, once, when it is back."""

from __future__ import annotations

from pathlib import Path

import redis
import sqlalchemy as sa

from client.events import stream_outcomes, wait_for_outcomes
from client.raw_message import task_id_of
from tests.support.celery_events import TaskEventRecorder
from tests.support.messages import own_sessions_reset
from tests.support.seeding import Seeder
from tests.support.services import PrivateRedis
from tests.support.workers import WorkerProcess, worker_env
from worker.db.engine import create_db_engine
from worker.db.models import OutcomeRecord


def test_an_event_that_could_not_be_published_is_relayed_once_redis_is_back(
    redis_url: str,
    database_url: str,
    seeder: Seeder,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """The events Redis is down through every retry: the committed success still gets out."""
    with PrivateRedis() as events_redis:
        events_redis.stop()
        env = worker_env(
            redis_url=redis_url,
            database_url=database_url,
            ACCOUNT_RESET_EVENTS_URL=events_redis.url,
            ACCOUNT_RESET_MAX_RETRIES="0",
            ACCOUNT_RESET_RELAY_INTERVAL_S="0.5",
            ACCOUNT_RESET_RELAY_GRACE_S="1",
        )
        user = seeder.account()
        queue, stream = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"]
        message = own_sessions_reset(user.accountid, queue)
        worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
        try:
            with TaskEventRecorder(redis_url) as recorder:
                recorder.wait_for(lambda e: e.get("hostname") == worker.nodename, timeout_s=60)
                redis_client.lpush(queue, message)
                # The task has given up: only the relay can publish the event now.
                recorder.wait_for(
                    lambda e: e.get("uuid") == task_id_of(message) and e["type"] == "task-failed",
                    timeout_s=60,
                )
            assert unpublished(database_url, task_id_of(message))
            events_redis.start()
            events = redis.Redis.from_url(events_redis.url)
            found = wait_for_outcomes(events, stream, {task_id_of(message)}, timeout_s=60)
            assert found[task_id_of(message)].status == "success"
            worker.wait_for_log(r"relayed \d+ outcome\(s\) committed but not published")
        finally:
            worker.stop()
            redis_client.delete(queue)
        ours = [e for e in stream_outcomes(events, stream) if e.command_id == task_id_of(message)]
        assert [e.event_id for e in ours] == [found[task_id_of(message)].event_id]
        assert seeder.load(user.accountid).session_key_number == 2


def unpublished(database_url: str, command_id: str) -> bool:
    """Whether the command's outcome is committed and not marked published."""
    engine = create_db_engine(database_url)
    query = sa.select(OutcomeRecord.published_at).where(OutcomeRecord.command_id == command_id)
    try:
        with engine.connect() as connection:
            row = connection.execute(query).first()
    finally:
        engine.dispose()
    return row is not None and row.published_at is None
