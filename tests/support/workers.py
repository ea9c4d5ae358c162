"""Real `celery -A worker worker` processes, each with its own queue, stream and database."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from client.events import wait_for_outcomes
from schemas import CommandOutcome
from tests.support.ids import unique
from tests.support.keys import (
    TEST_BCRYPT_ROUNDS,
    TEST_HASH_KEY,
    TEST_PAYLOAD_KEY,
    TEST_SEALING_KEYS_JSON,
    TEST_SEALING_PUBLIC_KEY,
)
from tests.support.probes import CLI
from tests.support.waiting import poll_until
from worker import keys
from worker.dev import processes
from worker.ops.health_notes import nodes_folder

WORKER_STOP_DEADLINE_S = processes.STOP_DEADLINE_S


def remove_health_files(env: Mapping[str, str]) -> None:
    """A worker env's health notes: its nodes' folder (`<file>.d`, which a worker killed
    before its shutdown leaves), and notes written beside the file itself (`<file>.*`)."""
    named = env.get("ACCOUNT_RESET_HEALTH_FILE")
    if named is None:
        return
    path = Path(named)
    shutil.rmtree(nodes_folder(path), ignore_errors=True)
    for note in [path, *path.parent.glob(path.name + ".*")]:
        note.unlink(missing_ok=True)


@dataclass
class WorkerProcess(processes.WorkerProcess):
    """The dev launcher's worker (worker/dev/processes.py), logging at DEBUG for the tests to read,
    whose stop also removes its health notes."""

    loglevel: str = "DEBUG"
    nodename: str = field(default_factory=lambda: processes.nodename("test"))

    def start(self, *options: str) -> WorkerProcess:
        super().start(*options)
        return self

    def stop(self, timeout_s: float = WORKER_STOP_DEADLINE_S) -> int:
        code = super().stop(timeout_s)
        remove_health_files(self.env)
        return code

    def outcomes(
        self, client: redis.Redis, command_ids: set[str], timeout_s: float = 60.0
    ) -> dict[str, CommandOutcome]:
        """Wait for the event of each command on this worker's stream."""
        stream = self.env["ACCOUNT_RESET_EVENTS_STREAM"]
        return wait_for_outcomes(client, stream, command_ids, timeout_s=timeout_s)

    def remove_keys(self, redis_url: str, *extra: str) -> None:
        """Delete every Redis key this worker's settings name (queues, their lists, the events
        stream, the dead letters), and `extra`."""
        client = redis.Redis.from_url(redis_url)
        client.delete(*session_keys_of(self.env), *extra)
        # An every_account run's senders, one key per message (worker/broker/chunk_senders.py).
        if "ACCOUNT_RESET_QUEUE" in self.env:
            senders = keys.chunk_sender(self.env["ACCOUNT_RESET_QUEUE"], "*")
            for key in client.scan_iter(match=senders):
                client.delete(key)
        client.close()


@dataclass
class CommandWorker(processes.WorkerProcess):
    """A worker started by a command line as an operator types it (`account-reset worker`,
    `celery -A worker worker`), with none of the options the launcher adds."""

    command: list[str] = field(default_factory=lambda: [CLI, "worker"])

    def start(self, *options: str) -> CommandWorker:
        self.argv = [*self.command, *options]
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        return self

    def node(self) -> str:
        """The node name it runs as, once it consumes (Celery's "<node> ready." line)."""
        return self.wait_for_log(r"(\S+) ready\.")


def pool_children(worker: WorkerProcess) -> list[int]:
    """The pids of the worker's pool processes (children of its main process)."""
    assert worker.process is not None
    children = Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def wait_until_acknowledged(client: redis.Redis, queue: str, timeout_s: float) -> None:
    """Until the worker has taken and acknowledged every message of `queue`: the queue, its
    reserved list and its unacknowledged hash are all empty (a worker stopped before its last
    acknowledgement hands that message back to the queue, and the next start replays it)."""
    keys = [queue, queue + ":reserved", queue + ":unacked"]
    # Redis has no notification for an emptied key.
    poll_until(lambda: not client.exists(*keys), timeout_s, f"{queue}: every message acknowledged")


# Every Redis key a worker env of this test session names; removed when the session ends
# (tests delete what they look at; this catches what a failed or killed run left).
SESSION_KEYS: set[str] = set()
# Every worker env of this test session, whose health notes are removed when it ends.
SESSION_ENVS: list[dict[str, str]] = []


def session_keys_of(env: Mapping[str, str]) -> set[str]:
    queues = [env[name] for name in ("ACCOUNT_RESET_QUEUE", "ACCOUNT_RESET_SESSIONS_QUEUE")
              if name in env]  # fmt: skip
    suffixes = ("", ":reserved", ":reserved:seen", ":reserved:mutex", ":unacked",
                ":unacked_index", ":unacked_mutex")  # fmt: skip
    # kombu declares each queue's binding in keys of its own, which outlive the queue.
    kinds = ("binding", "binding_permanent")
    bindings = {f"_kombu.{kind}.{queue}" for queue in queues for kind in kinds}
    return (
        bindings
        | {queue + suffix for queue in queues for suffix in suffixes}
        | {
            env["ACCOUNT_RESET_EVENTS_STREAM"],
            env["ACCOUNT_RESET_DEAD_LETTERS_KEY"],
        }
    )


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any ACCOUNT_RESET_ setting, and `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
    env.update(overrides)
    return env


def worker_env(*, redis_url: str, database_url: str, **overrides: str) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            # Tests use a cheap bcrypt cost, which only development accepts.
            "ACCOUNT_RESET_ENVIRONMENT": "development",
            "ACCOUNT_RESET_BROKER_URL": redis_url,
            "ACCOUNT_RESET_DATABASE_URL": database_url,
            "ACCOUNT_RESET_QUEUE": unique("account-reset-test"),
            "ACCOUNT_RESET_EVENTS_STREAM": unique("account-reset-test") + ":events",
            "ACCOUNT_RESET_HASH_KEY": TEST_HASH_KEY,
            "ACCOUNT_RESET_BCRYPT_ROUNDS": str(TEST_BCRYPT_ROUNDS),
            "ACCOUNT_RESET_APPID": "test-app",
            "ACCOUNT_RESET_CACHE_URL": redis_url,
            "ACCOUNT_RESET_WORKER_CONCURRENCY": "2",
            "ACCOUNT_RESET_DEAD_LETTERS_KEY": unique("account-reset-test") + ":dead-letters",
            "ACCOUNT_RESET_PAYLOAD_KEY": TEST_PAYLOAD_KEY,
            "ACCOUNT_RESET_SEALING_KEYS": TEST_SEALING_KEYS_JSON,
            # Read by producers only (the client, `enqueue`, the Node example), not the worker.
            "ACCOUNT_RESET_SEALING_PUBLIC_KEY": TEST_SEALING_PUBLIC_KEY,
            "ACCOUNT_RESET_HEALTH_FILE": str(
                Path(tempfile.gettempdir()) / f"{unique('account-reset-test')}.health"
            ),
        }
    )
    env.update(overrides)
    SESSION_KEYS.update(session_keys_of(env))
    SESSION_ENVS.append(env)
    return env
