"""A stream of reset-session-key commands over many accounts, and the exactly-once check.

Every fault test sends the same kind of stream, breaks something mid-stream, and then checks
the one thing that matters: each account's key number went up by exactly its number of
commands, and each command has its event, under one event_id however often it was published.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

from client.events import stream_outcomes, wait_for_outcomes
from client.raw_message import task_id_of
from schemas import CommandOutcome
from tests.support.messages import own_sessions_reset
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess, pool_children, worker_env
from worker.broker.transport import reserved_key

EVENT_DEADLINE_S = 180.0
PROCESS_DEADLINE_S = 30.0


def crash_env(redis_url: str, database_url: str, **overrides: str) -> dict[str, str]:
    # A short visibility timeout, so a killed main process's commands come back within seconds.
    return worker_env(
        redis_url=redis_url,
        database_url=database_url,
        ACCOUNT_RESET_VISIBILITY_TIMEOUT_S="5",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="2",
        ACCOUNT_RESET_RESTORE_INTERVAL_S="1",
        **overrides,
    )


@dataclass
class CommandStream:
    """`count` commands spread over `accounts` accounts, ready to push."""

    queue: str
    stream: str
    accounts: list[str]
    messages: list[str] = field(default_factory=list)
    account_of: dict[str, str] = field(default_factory=dict)

    @classmethod
    def plan(
        cls, seeder: Seeder, worker: WorkerProcess, *, accounts: int, count: int
    ) -> CommandStream:
        env = worker.env
        made = cls(
            queue=env["ACCOUNT_RESET_QUEUE"],
            stream=env["ACCOUNT_RESET_EVENTS_STREAM"],
            accounts=[seeder.account().accountid for _ in range(accounts)],
        )
        for i in range(count):
            accountid = made.accounts[i % accounts]
            message = own_sessions_reset(accountid, made.queue)
            made.messages.append(message)
            made.account_of[task_id_of(message)] = accountid
        return made

    def push(self, client: redis.Redis) -> None:
        client.rpush(self.queue, *self.messages)  # taken from the right: first in, first out

    def delete(self, client: redis.Redis) -> None:
        """Remove the stream's keys: its queue, reserved list and events."""
        reserved = reserved_key(self.queue)
        client.delete(self.queue, reserved, reserved + ":seen", self.stream)

    def wait_for_progress(self, client: redis.Redis, events: int) -> None:
        """Until the stream holds at least `events` events (from any attempt)."""
        poll_until(
            lambda: client.xlen(self.stream) >= events,
            EVENT_DEADLINE_S,
            f"{events} events on {self.stream}",
            interval_s=0.02,  # each check is one XLEN
        )

    def verify(
        self,
        seeder: Seeder,
        client: redis.Redis,
        label: str,
    ) -> dict[str, int]:
        """Wait for every command's event, then check effects and events; print the figures."""
        ids = set(self.account_of)
        wait_for_outcomes(client, self.stream, ids, timeout_s=EVENT_DEADLINE_S)
        events = [e for e in stream_outcomes(client, self.stream) if e.command_id in ids]
        per_command = _event_ids(events)
        expected = Counter(self.account_of.values())
        applied = {a: (seeder.load(a).session_key_number or 0) - 1 for a in self.accounts}
        figures = {
            "sent": len(ids),
            "applied": sum(applied.values()),
            "events": len(events),
            "lost": len(ids - per_command.keys()),
            "duplicated effects": sum(max(applied[a] - n, 0) for a, n in expected.items()),
            "missing effects": sum(max(n - applied[a], 0) for a, n in expected.items()),
            "repeated events (same event_id)": len(events) - len(per_command),
            "commands with two event_ids": sum(len(v) > 1 for v in per_command.values()),
        }
        print(f"\n{label}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        assert applied == dict(expected)
        assert figures["lost"] == 0
        assert figures["commands with two event_ids"] == 0
        assert {e.status for e in events} == {"success"}
        return figures


def _event_ids(events: list[CommandOutcome]) -> dict[str, set[str]]:
    per_command: dict[str, set[str]] = {}
    for event in events:
        per_command.setdefault(event.command_id, set()).add(event.event_id)
    return per_command


def kill_main(worker: WorkerProcess) -> list[int]:
    """SIGKILL the main process alone; returns its orphaned pool children."""
    assert worker.process is not None
    orphans = pool_children(worker)
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(timeout=PROCESS_DEADLINE_S)
    worker.process = None
    return orphans


def wait_gone(pids: list[int]) -> None:
    """Orphaned pool children finish their task and exit once they see the parent gone;
    any still there at the deadline are killed, as a supervisor would."""
    # No exit notification for a process that is not our child, so /proc is read again.
    with contextlib.suppress(TimeoutError):
        poll_until(lambda: not any(map(_alive, pids)), PROCESS_DEADLINE_S, "orphans gone")
    for pid in filter(_alive, pids):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
