"""A flood of hostile entries, interleaved with good commands, through a real worker.

Thousands of entries of every refused kind (deep nesting, oversized entries and bodies, invalid
UTF-8, envelopes that are not kombu's or of types kombu chokes on, attached callbacks and chains
in the body or the headers, Celery's built-in tasks,
unknown tasks, a schedule or time limit or another name in the headers, pickle) between 300
good reset-session-key commands: every good command is applied once, every refused entry is
dead-lettered (and positional arguments, which the command's checks refuse, are answered
invalid-payload), nothing stays reserved or unacknowledged, and the worker's main process is
the same process from start to end.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from client.events import wait_for_outcomes
from client.raw_message import raw_protocol2_message, task_id_of
from tests.faults.harness import CommandStream
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess, worker_env
from worker.broker.transport import reserved_key
from worker.security.hashing import Hasher
from worker.streams.dead_letters import DeadLetterBox

GOOD = 300
HOSTILE_PER_KIND = 150


def _with(queue: str, *, headers: dict[str, Any] | None = None, embed: Any = None,
          task: str = "reset-session-key", args: list[Any] | None = None) -> str:  # fmt: skip
    message = json.loads(raw_protocol2_message(task, {"accountid": "acct_x"}, queue))
    message["headers"].update(headers or {})
    body = [args or [], {"accountid": "acct_x"}, embed or {}]
    message["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    return json.dumps(message)


def _retyped(entry: str, name: str, value: Any) -> str:
    message = json.loads(entry)
    message["properties"][name] = value
    return json.dumps(message)


def hostile_kinds(queue: str) -> dict[str, Any]:
    """One maker per kind; each call makes a fresh entry (its own task id)."""
    callback = {"task": "celery.accumulate", "args": [], "kwargs": {}, "options": {}}
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return {
        "deep nesting": lambda: "[" * 50_000 + "]" * 50_000,
        "oversized entry": lambda: _with(queue, headers={"pad": "p" * 300_000}),
        "oversized body": lambda: raw_protocol2_message(
            "reset-session-key", {"pad": "p" * 70_000}, queue
        ),
        "invalid UTF-8": lambda: b'{"body": "\xff", "headers": {"task": "\xc3\x28"}}',
        "not an envelope": lambda: json.dumps({"headers": {"task": "reset-session-key"}}),
        "callbacks": lambda: _with(queue, embed={"callbacks": [callback]}),
        "callbacks in the headers": lambda: _with(queue, headers={"callbacks": [callback]}),
        "body_encoding not base64": lambda: _retyped(_with(queue), "body_encoding", "nope"),
        "delivery_tag a list": lambda: _retyped(_with(queue), "delivery_tag", [1, 2]),
        "chain": lambda: _with(queue, embed={"chain": [callback]}),
        "built-in task": lambda: _with(queue, task="celery.accumulate"),
        "unknown task": lambda: _with(queue, task="os.system"),
        "eta a day ahead": lambda: _with(queue, headers={"eta": later}),
        "expires": lambda: _with(queue, headers={"expires": later}),
        "time limit": lambda: _with(queue, headers={"timelimit": [0.01, 0.01]}),
        "shadow": lambda: _with(queue, headers={"shadow": "reset-account-password"}),
        "pickle": lambda: raw_protocol2_message(
            "reset-session-key",
            {},
            queue,
            body=b"\x80\x04K\x01.",
            content_type="application/x-python-serialize",
        ),
    }


def test_a_flood_of_hostile_entries_between_good_commands(
    redis_url: str, postgres_url: str, hasher: Hasher, redis_client: redis.Redis, tmp_path: Path
) -> None:
    seeder = Seeder(postgres_url, hasher)
    worker = WorkerProcess(
        env=worker_env(redis_url=redis_url, database_url=postgres_url),
        log_path=tmp_path / "worker.log",
    )
    good = CommandStream.plan(seeder, worker, accounts=60, count=GOOD)
    makers = hostile_kinds(good.queue)
    hostile = [make() for make in makers.values() for _ in range(HOSTILE_PER_KIND)]
    # Refused by the command's own checks, not dead-lettered: answered invalid-payload.
    positional = [_with(good.queue, args=["acct_x"]) for _ in range(HOSTILE_PER_KIND)]
    hostile += positional
    # Hostile entries before each good command, all of them before the last one: once every
    # good command has its event, every hostile entry has been taken.
    entries: list[Any] = []
    step = -(-len(hostile) // GOOD)
    for i, message in enumerate(good.messages):
        entries += [*hostile[i * step : (i + 1) * step], message]
    letters_key = worker.env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]
    box = DeadLetterBox(redis_client, letters_key, maxlen=None, sealer=None)
    try:
        worker.start()
        assert worker.process is not None
        pid = worker.process.pid
        for start in range(0, len(entries), 500):
            redis_client.rpush(good.queue, *entries[start : start + 500])
        figures = good.verify(seeder, redis_client, f"{len(hostile)} hostile entries")
        letters = box.all()
        by_reason: dict[str, int] = {}
        for letter in letters:
            by_reason[letter.reason.value] = by_reason.get(letter.reason.value, 0) + 1
        print(f"hostile sent {len(hostile)} of {len(makers) + 1} kinds; dead letters {by_reason}")
        assert len(letters) == len(hostile) - len(positional)
        answered = wait_for_outcomes(
            redis_client, good.stream, {task_id_of(m) for m in positional}, timeout_s=60
        )
        assert {outcome.code for outcome in answered.values()} == {"invalid-payload"}
        assert figures["applied"] == GOOD
        assert worker.process is not None
        assert worker.process.pid == pid
        assert worker.process.poll() is None
        assert redis_client.llen(good.queue) == 0
        assert redis_client.llen(reserved_key(good.queue)) == 0
        assert redis_client.zcard(f"{good.queue}:unacked_index") == 0
    finally:
        worker.stop()
        good.delete(redis_client)
        redis_client.delete(letters_key, f"{good.queue}:unacked", f"{good.queue}:unacked_index")
        seeder.engine.dispose()
