"""The outbox relay: a committed outcome always reaches the stream, a rolled-back one never does.

The relay in a real worker, while the events Redis is down: tests/e2e/test_outbox_on_a_worker.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from client.events import stream_outcomes
from schemas import CommandOutcome, ResetSessionKey
from tasks import handlers
from tests.support.ids import unique
from tests.support.seeding import Seeder
from tests.support.workers import worker_env
from worker.db.engine import create_db_engine, session_factory
from worker.db.unit_of_work import UnitOfWork
from worker.streams.bookkeeping import COUNTED_MARKER_PREFIX, DashboardBookkeeping
from worker.streams.cache import DashboardCache
from worker.streams.outbox import OutboxRelay
from worker.streams.publisher import EventStream

GRACE = timedelta(seconds=10)
RETENTION = timedelta(days=30)


@pytest.fixture
def relay(
    own_database_url: str, events_stream: EventStream, redis_client: redis.Redis
) -> Iterator[OutboxRelay]:
    # A database of its own: an unpublished row another test left would be overdue here.
    engine = create_db_engine(own_database_url)
    yield OutboxRelay(
        sessions=session_factory(engine),
        events=events_stream,
        dashboard=DashboardBookkeeping(
            cache=DashboardCache(redis_client),
            metrics_store="redis",
            metrics_client=redis_client,
        ),
        grace=GRACE,
        batch_size=2,
        retention=RETENTION,
    )
    engine.dispose()


def committed(
    relay: OutboxRelay,
    *,
    commit: bool = True,
    command: str = "reset-session-key",
    appid: str = "test-app",
    accountid: str = "a",
) -> CommandOutcome:
    """An outcome recorded as a task records it, then (as after a crash) never published."""
    outcome = CommandOutcome.success(
        command_id=f"relay-{datetime.now(UTC).timestamp()}-{id(object())}",
        command=command,
        appid=appid,
        accountid=accountid,
    )
    with UnitOfWork(relay.sessions) as uow:
        uow.record_outcome(outcome, scope=appid, fingerprint=None)
        if commit:
            uow.commit()
    return outcome


def relayed_ids(relay: OutboxRelay) -> list[str]:
    return [e.event_id for e in stream_outcomes(relay.events.client, relay.events.stream)]


def test_an_unpublished_outcome_is_relayed_once_after_the_grace_period(
    relay: OutboxRelay,
) -> None:
    mine = {committed(relay).event_id for _ in range(3)}
    rolled_back = committed(relay, commit=False)
    later = datetime.now(UTC) + GRACE + timedelta(seconds=1)

    assert relay.relay_once(datetime.now(UTC)) == 0  # within the grace: the task may publish
    while relay.relay_once(later):  # batches of 2
        pass

    published = relayed_ids(relay)
    assert set(published) == mine
    assert len(published) == len(set(published))
    assert rolled_back.event_id not in published
    relay.relay_once(later)
    assert relayed_ids(relay) == published


def test_a_relayed_success_keeps_the_dashboards_books_once(
    relay: OutboxRelay, redis_client: redis.Redis
) -> None:
    """The relay published, but forgot neither the dashboard's cache entry nor counted the
    reset: a task that died after its commit left the dashboard serving the cached account."""
    appid, accountid = unique("relay-app"), unique("acct")
    redis_client.set(accountid, "{}")  # the dashboard's cache entry for the account
    outcome = committed(relay, command="reset-account-password", appid=appid, accountid=accountid)
    later = datetime.now(UTC) + GRACE + timedelta(seconds=1)
    while relay.relay_once(later):
        pass
    assert redis_client.exists(accountid) == 0
    counted = redis_client.hgetall(f"{appid}/metrics")
    assert counted[b"resetcodes-used/total"] == b"1"
    # Published once more (the relay, a replay, the final-failure path): counted once.
    relay.dashboard.after_commit(outcome)
    assert redis_client.hgetall(f"{appid}/metrics") == counted
    marker = f"{COUNTED_MARKER_PREFIX}:{outcome.event_id}"
    redis_client.delete(f"{appid}/metrics", marker)


def test_published_outcomes_are_pruned_after_the_retention(relay: OutboxRelay) -> None:
    outcome = committed(relay)
    with UnitOfWork(relay.sessions) as uow:
        uow.mark_published([outcome.event_id], datetime.now(UTC))
        uow.commit()
    relay.relay_once(datetime.now(UTC) + RETENTION - timedelta(minutes=1))
    key = {"scope": "test-app", "command_id": outcome.command_id}
    with UnitOfWork(relay.sessions) as uow:
        assert uow.recorded_outcome(**key) is not None
    relay.relay_once(datetime.now(UTC) + RETENTION + timedelta(minutes=1))
    with UnitOfWork(relay.sessions) as uow:
        assert uow.recorded_outcome(**key) is None


def test_events_older_than_the_retention_are_trimmed_from_the_stream(
    relay: OutboxRelay,
) -> None:
    max_age = timedelta(hours=1)
    aged = dataclasses.replace(relay, events=dataclasses.replace(relay.events, max_age=max_age))
    for _ in range(3):
        aged.events.publish(committed(relay))
    stream, client = aged.events.stream, aged.events.client

    aged.relay_once(datetime.now(UTC) + max_age - timedelta(minutes=1))
    kept = client.xlen(stream)
    aged.relay_once(datetime.now(UTC) + max_age + timedelta(minutes=1))

    assert kept >= 3
    assert client.xlen(stream) == 0


@pytest.fixture
def runtime_from(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], Any]]:
    """This process's worker runtime, built from a worker env as a pool child builds it."""
    from worker import bootstrap
    from worker.settings import get_settings

    def build(env: dict[str, str]) -> bootstrap.Runtime:
        for name, value in env.items():
            if name.startswith("ACCOUNT_RESET_"):
                monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        if bootstrap._runtime is not None:
            bootstrap._runtime.engine.dispose()
        bootstrap._runtime = None
        return bootstrap.runtime()

    yield build
    if bootstrap._runtime is not None:
        bootstrap._runtime.engine.dispose()
    bootstrap._runtime = None
    get_settings.cache_clear()


def test_finding_6_the_final_failure_path_forgets_the_cache_entry(
    request: pytest.FixtureRequest,
    runtime_from: Callable[[dict[str, str]], Any],
    redis_url: str,
    database_url: str,
    seeder: Seeder,
    redis_client: redis.Redis,
) -> None:
    """Finding 6 (secrets issue): a session reset whose task died after the commit left the
    dashboard serving the cached account when the final-failure path published the outcome.
    Here the commit happens while the cache is out of reach (the entry stays), the task then
    fails for good, and `on_failure` publishes the recorded success: the entry is gone."""
    from tasks.entrypoints import reset_session_key
    from worker.broker.task import RetriesExhausted

    user = seeder.account()
    env = worker_env(redis_url=redis_url, database_url=database_url)
    redis_client.set(user.accountid, "{}")  # the dashboard's cache entry for the account
    payload = {"accountid": user.accountid, "requester_accountid": user.accountid,
               "command_id": unique("final")}  # fmt: skip
    cache_down = runtime_from({**env, "ACCOUNT_RESET_CACHE_URL": "redis://127.0.0.1:1/0"})
    first = cache_down.processor.run(
        ResetSessionKey, handlers.reset_session_key, args=(), payload=payload, task_id="t-1"
    )
    # Its outcome is left unpublished on purpose; marked once done, or the outbox relay of
    # another test's worker on this session's database would publish it on that test's stream.
    request.addfinalizer(
        lambda: cache_down.processor.units.mark_published([first.event_id], datetime.now(UTC))
    )
    assert first.status == "success"
    assert redis_client.exists(user.accountid) == 1, "the cache was out of reach"

    runtime_from(env)
    reset_session_key.on_failure(RetriesExhausted("ConnectionError"), "t-1", (), payload, None)

    assert redis_client.exists(user.accountid) == 0
    stream = env["ACCOUNT_RESET_EVENTS_STREAM"]
    published = [e for e in stream_outcomes(redis_client, stream) if e.event_id == first.event_id]
    assert len(published) == 2  # by the task, then by the final-failure path: one event_id
    assert seeder.load(user.accountid).session_key_number == 2
    redis_client.delete(stream)
