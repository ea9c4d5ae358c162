"""Issue 15, target 1: reset-session-key's round trips to the database, counted.

Before: BEGIN, the recorded-outcome SELECT, the account's SELECT … FOR UPDATE, its UPDATE, the
outcome's INSERT, COMMIT, then one more UPDATE to mark the outcome published: 5 statements and
7 round trips a command. Now the account is changed by one UPDATE … RETURNING and the published
marks of many commands share one UPDATE (worker/db/published_marks.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa

from tasks.pipeline import CommandProcessor
from tests.support.commands import in_process_processor, reset_session_key
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from worker.db.engine import create_db_engine
from worker.db.models import OutcomeRecord
from worker.db.published_marks import PublishedMarks
from worker.db.unit_of_work import SqlUnitsOfWork
from worker.security.hashing import Hasher
from worker.streams.publisher import EventStream

MARK_DEADLINE_S = 30.0


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """Every statement the engine sends, its first word and table, in order."""
    sent: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(" ".join(statement.split()[:3]))

    sa.event.listen(engine, "before_cursor_execute", note)
    yield sent
    sa.event.remove(engine, "before_cursor_execute", note)


@pytest.fixture
def worker_processor(
    engine: sa.Engine, hasher: Hasher, events_stream: EventStream, redis_client: redis.Redis
) -> Callable[..., CommandProcessor]:
    """The pipeline as the worker wires it (worker/bootstrap.py): published marks batched."""

    def made(*, within_s: float, batch_size: int = 100) -> CommandProcessor:
        processor = in_process_processor(engine, hasher, events_stream, redis_client)
        units = processor.units
        assert isinstance(units, SqlUnitsOfWork)
        marks = PublishedMarks(units.sessions, within_s=within_s, batch_size=batch_size)
        return dataclasses.replace(processor, units=SqlUnitsOfWork(units.sessions, marks=marks))

    return made


@pytest.fixture
def seeder(postgres_url: str, hasher: Hasher) -> Iterator[Seeder]:
    """Accounts on the PostgreSQL database (tests/conftest.py's `seeder` is per backend)."""
    made = Seeder(postgres_url, hasher)
    yield made
    made.engine.dispose()


def published(engine: sa.Engine, event_ids: list[str]) -> bool:
    query = sa.select(sa.func.count()).where(
        OutcomeRecord.event_id.in_(event_ids), OutcomeRecord.published_at.is_not(None)
    )
    with engine.connect() as connection:
        return connection.scalar(query) == len(event_ids)


def test_issue_15_reset_session_key_is_three_statements_on_postgresql(
    engine: sa.Engine,
    statements: list[str],
    seeder: Seeder,
    worker_processor: Callable[..., CommandProcessor],
) -> None:
    """Issue 15: 5 statements a command (7 round trips) before; now the recorded-outcome check,
    one UPDATE … RETURNING of the account, and the outcome's INSERT: 3 (5 round trips)."""
    user = seeder.account()
    processor = worker_processor(within_s=60.0)
    statements.clear()
    outcome = reset_session_key(
        processor, accountid=user.accountid, requester_accountid=user.accountid
    )
    assert outcome.status == "success"
    assert [s.split()[0] for s in statements] == ["SELECT", "UPDATE", "INSERT"]
    assert seeder.load(user.accountid).session_key_number == 2


def test_issue_15_published_marks_share_one_update(
    engine: sa.Engine,
    statements: list[str],
    seeder: Seeder,
    worker_processor: Callable[..., CommandProcessor],
) -> None:
    """Five commands' outcomes (a batch of five) are marked published by one UPDATE, not five."""
    users = [seeder.account() for _ in range(5)]
    processor = worker_processor(within_s=60.0, batch_size=5)
    outcomes = [
        reset_session_key(processor, accountid=u.accountid, requester_accountid=u.accountid)
        for u in users
    ]
    assert published(engine, [o.event_id for o in outcomes])
    assert len([s for s in statements if s.startswith("UPDATE account_reset_outcomes")]) == 1


def test_issue_15_a_published_mark_comes_within_its_delay(
    engine: sa.Engine, seeder: Seeder, worker_processor: Callable[..., CommandProcessor]
) -> None:
    """A lone command's outcome is marked once `within_s` has passed, with no other command."""
    user = seeder.account()
    processor = worker_processor(within_s=0.2)
    outcome = reset_session_key(
        processor, accountid=user.accountid, requester_accountid=user.accountid
    )
    poll_until(lambda: published(engine, [outcome.event_id]), MARK_DEADLINE_S, "the mark")
