"""Issue 16, finding 13: no `rq info`-style status view. `account-reset status` (the real console
script, against real Redis, beside a real worker where one is needed) shows each queue's depth,
reserved and unacknowledged messages, the dead letters, the consumer groups of the events stream
with their lag, and the live workers, as tables and as one JSON object.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from client.raw_message import raw_protocol2_message
from tests.e2e.test_redis_acl import load_acl_users, url_for
from tests.support.databases import migrated_sqlite
from tests.support.ids import unique
from tests.support.probes import CLI
from tests.support.services import PrivateRedis
from tests.support.waiting import poll_until
from tests.support.workers import (
    SESSION_KEYS,
    WorkerProcess,
    clean_env,
    session_keys_of,
    worker_env,
)
from worker import keys
from worker.dev.processes import free_port
from worker.streams.dead_letters import DeadLetterBox, Reason, sealed_letter

DEADLINE_S = 60.0
# How long workers have to answer: short, since no test here waits for a worker that is absent.
ANSWER_S = "0.5"


def status_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "status", "--timeout", ANSWER_S, *args],
        env=env, capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip


def status_json(env: dict[str, str]) -> dict[str, Any]:
    result = status_run(env, "--json")
    assert result.returncode == 0, result.stderr
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


@pytest.fixture
def env(redis_url: str) -> Iterator[dict[str, str]]:
    """A producer's settings naming a queue, an events stream and dead letters of this test's
    own, which no worker takes from; every key they name is removed afterwards."""
    name = unique("status-test")
    settings = clean_env(
        ACCOUNT_RESET_BROKER_URL=redis_url,
        ACCOUNT_RESET_QUEUE=name,
        ACCOUNT_RESET_SESSIONS_QUEUE=f"{name}-sessions",
        ACCOUNT_RESET_EVENTS_STREAM=f"{name}:events",
        ACCOUNT_RESET_DEAD_LETTERS_KEY=f"{name}:dead-letters",
    )
    SESSION_KEYS.update(session_keys_of(settings))
    yield settings
    client = redis.Redis.from_url(redis_url)
    client.delete(*session_keys_of(settings))
    client.close()


def test_finding_13_status_shows_the_depth_of_a_queue_no_worker_takes(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Seven revocations enqueued with `account-reset enqueue`, which sends them to the
    sessions queue, which no worker takes from: seven waiting there, none on the main queue,
    none reserved or unacknowledged, no live worker of either queue."""
    commands = tmp_path / "commands.jsonl"
    commands.write_text("".join(f'{{"accountid": "{unique("acct")}"}}\n' for _ in range(7)))
    sent = subprocess.run(
        [CLI, "enqueue", "reset-session-key", "--from-file", str(commands)],
        env=env, capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr

    figures = status_json(env)
    table = status_run(env)

    assert figures["queues"] == [
        {"name": env["ACCOUNT_RESET_QUEUE"], "depth": 0, "reserved": 0, "unacknowledged": 0},
        {
            "name": env["ACCOUNT_RESET_SESSIONS_QUEUE"],
            "depth": 7, "reserved": 0, "unacknowledged": 0,
        },
    ]  # fmt: skip
    assert figures["workers"]["nodes"] == []
    assert "answered Celery's remote control" in figures["workers"]["how"]
    assert figures["no_permission"] == []
    assert table.returncode == 0
    assert env["ACCOUNT_RESET_SESSIONS_QUEUE"] in table.stdout
    assert "│ 7 " in table.stdout


def test_finding_13_status_counts_the_dead_letters(env: dict[str, str]) -> None:
    """Three dead letters, as the worker keeps them: counted, with the newest one's time."""
    client = redis.Redis.from_url(env["ACCOUNT_RESET_BROKER_URL"])
    box = DeadLetterBox(
        client=client, key=env["ACCOUNT_RESET_DEAD_LETTERS_KEY"], maxlen=None, sealer=None
    )
    before = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(3):
        letter = sealed_letter(
            reason=Reason.UNKNOWN_TASK, detail="no such task", task="no-such-task",
            task_id=unique("task"), kwargs={}, sealer=None,
        )  # fmt: skip
        box.put(letter)
    client.close()

    letters = status_json(env)["dead_letters"]

    assert (letters["key"], letters["count"]) == (env["ACCOUNT_RESET_DEAD_LETTERS_KEY"], 3)
    assert datetime.fromisoformat(letters["newest_at"]) >= before


def test_finding_13_status_shows_a_consumer_groups_lag_and_pending(env: dict[str, str]) -> None:
    """An audit group on a stream of 10 events has read 4 and acknowledged 1: 6 behind (lag),
    3 delivered and not acknowledged (pending)."""
    stream = env["ACCOUNT_RESET_EVENTS_STREAM"]
    client = redis.Redis.from_url(env["ACCOUNT_RESET_BROKER_URL"], decode_responses=True)
    for number in range(10):
        client.xadd(stream, {"event": json.dumps({"number": number})})
    client.xgroup_create(stream, "audit", id="0")
    read: Any = client.xreadgroup("audit", "auditor-1", {stream: ">"}, count=4)
    client.xack(stream, "audit", read[0][1][0][0])
    client.close()

    events = status_json(env)["events"]

    assert events["length"] == 10
    assert [(g["name"], g["consumers"], g["pending"], g["lag"]) for g in events["groups"]] == [
        ("audit", 1, 3, 6)
    ]


def held_retry(queue: str, accountid: str, *, in_s: float) -> str:
    """A retry of a command, due in `in_s`: the worker takes it and holds it, unacknowledged,
    until then (the worker's own retries are the only messages with an `eta` it accepts)."""
    message = json.loads(
        raw_protocol2_message(
            "reset-session-key",
            {"accountid": accountid, "requester_accountid": accountid},
            queue,
        )
    )
    due = datetime.now(UTC) + timedelta(seconds=in_s)
    message["headers"].update(retries=1, eta=due.isoformat())
    return json.dumps(message)


def test_finding_13_status_shows_a_live_worker_and_the_command_it_holds(
    redis_url: str, tmp_path: Path
) -> None:
    """A real worker: it answers, under its node name and with its queue, and the retry it holds
    until it is due is one unacknowledged message; `--json` parses."""
    settings = worker_env(redis_url=redis_url, database_url=migrated_sqlite(tmp_path))
    queue = settings["ACCOUNT_RESET_QUEUE"]
    worker = WorkerProcess(env=settings, log_path=tmp_path / "worker.log").start()
    client = redis.Redis.from_url(redis_url)
    try:
        worker.wait_until_ready()
        client.lpush(queue, held_retry(queue, unique("acct"), in_s=25))
        poll_until(lambda: client.hlen(keys.unacked(queue)), DEADLINE_S, "the retry held")
        figures = status_json(settings)
        table = status_run(settings)
    finally:
        worker.stop()
        worker.remove_keys(redis_url)
        client.close()

    assert figures["queues"] == [{"name": queue, "depth": 0, "reserved": 0, "unacknowledged": 1}]
    assert {"name": worker.nodename, "queues": [queue]} in figures["workers"]["nodes"]
    assert worker.nodename in table.stdout


def test_finding_13_status_as_the_auditor_shows_what_it_may_not_read_as_no_permission(
    tmp_path: Path,
) -> None:
    """The auditor ACL user reads the events stream only: the queues, the dead letters and the
    workers are "no permission", not a traceback; the producer's user sees its queue's depth;
    the worker's user, which operators use, reads everything."""
    with PrivateRedis() as server:
        settings = worker_env(redis_url=server.url, database_url="sqlite:///unused.db")
        load_acl_users(server, settings)
        queue, stream = settings["ACCOUNT_RESET_QUEUE"], settings["ACCOUNT_RESET_EVENTS_STREAM"]
        redis.Redis.from_url(server.url).xgroup_create(stream, "audit", id="$", mkstream=True)
        as_auditor = {**settings, "ACCOUNT_RESET_BROKER_URL": url_for(server, "auditor")}
        as_producer = {**settings, "ACCOUNT_RESET_BROKER_URL": url_for(server, "producer")}
        auditor = status_json(as_auditor)
        auditor_table = status_run(as_auditor)
        producer = status_json(as_producer)
        operator = status_json({**settings, "ACCOUNT_RESET_BROKER_URL": url_for(server, "worker")})

    assert auditor["no_permission"] == [
        f"queues.{queue}.depth", f"queues.{queue}.reserved", f"queues.{queue}.unacknowledged",
        "dead_letters", "workers",
    ]  # fmt: skip
    assert [group["name"] for group in auditor["events"]["groups"]] == ["audit"]
    assert auditor["broker"] == url_for(server, "auditor").replace("pw-auditor", "**")
    assert auditor_table.returncode == 0
    assert "no permission" in auditor_table.stdout
    assert "Traceback" not in auditor_table.stderr
    assert producer["queues"][0]["depth"] == 0
    assert producer["no_permission"] == [
        f"queues.{queue}.reserved", f"queues.{queue}.unacknowledged", "dead_letters",
        "events.length", "events.groups", "workers",
    ]  # fmt: skip
    assert operator["no_permission"] == []


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("ACCOUNT_RESET_BROKER_URL", "cannot reach Redis: "),
        ("ACCOUNT_RESET_SIGNING_KEY_FILE", "invalid settings: ACCOUNT_RESET_SIGNING_KEY_FILE"),
    ],
)
def test_finding_13_status_with_redis_out_of_reach_or_a_bad_setting_is_one_line(
    env: dict[str, str], setting: str, said: str
) -> None:
    """Redis down (a password in its URL, never shown), or a key file without its certificate:
    one line, exit code 1."""
    env = {**env, "ACCOUNT_RESET_BROKER_URL": f"redis://:a-password@127.0.0.1:{free_port()}/0"}
    if setting != "ACCOUNT_RESET_BROKER_URL":
        env[setting] = "/no/such/key.pem"

    result = status_run(env)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.splitlines()[0]]
    assert result.stderr.startswith(f"Error: {said}")
    assert "a-password" not in result.stderr
