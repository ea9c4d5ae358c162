"""Bulk revocation through a real worker and the real console script (issue 15, finding 3).

`account-reset enqueue reset-session-keys` ends the sessions of the accounts of a file, or of
every account of an appid; its result events name each account reset, and each account's
sessions end exactly once, across the messages a run is made of.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from client.events import stream_outcomes
from client.raw_message import raw_protocol2_message
from schemas import ResetSessionKeys
from schemas.commands import next_chunk
from schemas.events import BulkChunk
from tests.support.ids import unique
from tests.support.probes import CLI
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess, wait_until_acknowledged, worker_env

DEADLINE_S = 120.0
CHUNK = 5


@pytest.fixture(scope="module")
def bulk_worker(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker whose every_account runs go five accounts a message."""
    env = worker_env(
        redis_url=redis_url, database_url=database_url, ACCOUNT_RESET_BULK_CHUNK=str(CHUNK)
    )
    worker = WorkerProcess(env=env, log_path=tmp_path_factory.mktemp("bulk") / "worker.log")
    worker.start()
    yield worker
    worker.stop()
    worker.remove_keys(redis_url)


def enqueue(worker: WorkerProcess, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "enqueue", "reset-session-keys", *args, "--wait", str(DEADLINE_S)],
        env=worker.env, input=stdin, capture_output=True, text=True, timeout=DEADLINE_S + 30,
        check=False,
    )  # fmt: skip


def chunks_of(bulk_id: str, worker: WorkerProcess, client: redis.Redis) -> list[BulkChunk]:
    """What each message of the run did, from its events on the worker's stream."""
    stream = worker.env["ACCOUNT_RESET_EVENTS_STREAM"]
    return [
        event.bulk
        for event in stream_outcomes(client, stream)
        if event.bulk is not None and event.bulk.bulk_id == bulk_id
    ]


def test_a_file_of_accounts_is_reset_and_each_event_names_its_accounts(
    bulk_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """1,203 lines (1,201 accounts, one listed twice, one unknown): two messages, every
    account's key number + 1 once, the events naming each account exactly once."""
    appid = unique("bulk-app")
    accounts = seeder.accounts(1201, appid=appid)
    source = tmp_path / "accounts.txt"
    source.write_text("\n".join([*accounts, accounts[0], "acct_no_such_account"]) + "\n")

    done = enqueue(
        bulk_worker, "--from-file", str(source), "--appid", appid, "--requested-by", "incident-7"
    )

    assert done.returncode == 0, done.stderr
    bulk_id, summary = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    assert summary.startswith("1201 accounts reset, 1 not"), done.stdout
    assert set(seeder.key_numbers(accounts).values()) == {2}
    events = chunks_of(bulk_id, bulk_worker, redis_client)
    assert len(events) == 2
    named = [accountid for chunk in events for accountid in chunk.accountids]
    assert sorted(named) == sorted(accounts)


def test_every_account_of_an_appid_is_reset_once_across_chained_messages(
    bulk_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """23 accounts, five a message: the worker sends #1 to #4 itself; the last says done."""
    appid = unique("bulk-app")
    accounts = sorted(seeder.accounts(23, appid=appid))
    seeder.account(appid=appid, deleted=True)

    done = enqueue(bulk_worker, "--every-account", "--appid", appid)

    assert done.returncode == 0, done.stderr
    bulk_id = done.stdout.splitlines()[0]
    assert done.stdout.splitlines()[-1].startswith("23 accounts reset, 0 not")
    assert set(seeder.key_numbers(accounts).values()) == {2}
    chunks = sorted(chunks_of(bulk_id, bulk_worker, redis_client), key=lambda c: c.chunk)
    assert [chunk.chunk for chunk in chunks] == [0, 1, 2, 3, 4]
    assert [accountid for chunk in chunks for accountid in chunk.accountids] == accounts
    assert [chunk.done for chunk in chunks] == [False] * 4 + [True]


def test_a_chunk_delivered_again_after_its_next_committed_replays_alone(
    bulk_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Finding 3: chunk #1 of a finished every_account run delivered again (as after a worker
    killed between sending #2 and acknowledging #1) replays alone. It used to send #2 again,
    whose replay sent #3, to the run's end: a second chain behind the first (4 events here)."""
    appid = unique("bulk-app")
    seeder.accounts(23, appid=appid)
    done = enqueue(bulk_worker, "--every-account", "--appid", appid)
    assert done.returncode == 0, done.stderr
    bulk_id = done.stdout.splitlines()[0]
    first = next(c for c in chunks_of(bulk_id, bulk_worker, redis_client) if c.chunk == 0)
    again = next_chunk({}, first, appid=appid)
    assert again is not None
    stream = bulk_worker.env["ACCOUNT_RESET_EVENTS_STREAM"]
    before = stream_outcomes(redis_client, stream)

    message = raw_protocol2_message(ResetSessionKeys.name, again, bulk_worker.queue)
    redis_client.lpush(bulk_worker.queue, message)
    # Each message is acknowledged only after it has sent its next: the queue is empty once
    # no chain runs.
    wait_until_acknowledged(redis_client, bulk_worker.queue, DEADLINE_S)

    after = stream_outcomes(redis_client, stream)[len(before) :]
    recorded = next(o for o in before if o.command_id == f"{bulk_id}#1")
    assert [(o.command_id, o.event_id) for o in after] == [(recorded.command_id, recorded.event_id)]


def test_two_copies_of_a_runs_first_message_carry_the_run_on_once(
    bulk_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Finding 3, as CI saw it (16 events published again for 3 kills): a replay had sent its
    next message while the first copy of it was still queued, and the two copies, taken
    together by the two pool children, each sent the message after them, to the run's end.
    Here two copies of an every_account run's first message (23 accounts, five a message) go
    in together: one commits, the other replays, and only the first copy's delivery sends #1;
    six events in all, #0 twice under one event_id."""
    appid = unique("bulk-app")
    accounts = seeder.accounts(23, appid=appid)
    bulk_id = unique("bulk")
    first = {"command_id": bulk_id, "appid": appid, "every_account": True}
    copies = [raw_protocol2_message(ResetSessionKeys.name, first, bulk_worker.queue)
              for _ in range(2)]  # fmt: skip
    stream = bulk_worker.env["ACCOUNT_RESET_EVENTS_STREAM"]
    before = len(stream_outcomes(redis_client, stream))

    redis_client.lpush(bulk_worker.queue, *copies)
    wait_until_acknowledged(redis_client, bulk_worker.queue, DEADLINE_S)

    after = stream_outcomes(redis_client, stream)[before:]
    run = [o for o in after if o.bulk is not None and o.bulk.bulk_id == bulk_id]
    assert sorted(o.command_id for o in run) == sorted(
        [bulk_id, bulk_id, *(f"{bulk_id}#{n}" for n in range(1, 5))]
    )
    assert len({o.event_id for o in run}) == 5
    assert set(seeder.key_numbers(accounts).values()) == {2}
