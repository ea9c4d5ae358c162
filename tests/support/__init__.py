"""Helpers the tests share: real worker processes, databases, and ids that never collide."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
import sqlalchemy as sa

from client.events import wait_for_outcomes

# The tests' one way to write a raw message, as the client package defines it (re-exported).
from client.raw_message import raw_protocol2_message as raw_protocol2_message
from client.raw_message import task_id_of as task_id_of
from schemas import CommandOutcome
from worker.db.engine import normalized_url
from worker.security.sealing_keys import SealingKeys

WORKER_STOP_DEADLINE_S = 60
TEST_HASH_KEY = "test-hash-key-" + "k" * 20
TEST_BCRYPT_ROUNDS = 4
TEST_PAYLOAD_KEY = "x6Ky_9yt9BZP8oJGXGnsq1Ov7kxf1ic2bbZUnpWx4i4="
# This test session's sealing keys: workers get the private set, producers its public key.
TEST_SEALING_KEYS = SealingKeys.generated()
TEST_SEALING_KEYS_JSON = json.dumps(TEST_SEALING_KEYS.private_jwk_set())
TEST_SEALING_PUBLIC_KEY = json.dumps(TEST_SEALING_KEYS.public_jwk())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def remove_health_files(env: Mapping[str, str]) -> None:
    """A worker env's liveness note and the fault notes written beside it (`<file>.*`)."""
    named = env.get("ACCOUNT_RESET_HEALTH_FILE")
    if named is None:
        return
    path = Path(named)
    for note in [path, *path.parent.glob(path.name + ".*")]:
        note.unlink(missing_ok=True)


@dataclass
class WorkerProcess:
    """A real `celery -A worker worker` process with its own queue, stream and database."""

    env: dict[str, str]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    nodename: str = field(default_factory=lambda: unique("test") + "@" + socket.gethostname())

    def start(self, *extra: str) -> WorkerProcess:
        # A sessions node consumes the sessions queue (what `account-reset worker --sessions` does).
        sessions = self.env.get("ACCOUNT_RESET_NODE_ROLE") == "sessions"
        queue = self.env["ACCOUNT_RESET_SESSIONS_QUEUE" if sessions else "ACCOUNT_RESET_QUEUE"]
        self.argv = [
            sys.executable, "-m", "celery", "-A", "worker", "worker",
            f"--queues={queue}",
            f"--hostname={self.nodename}",
            "--loglevel=DEBUG", "--without-gossip", "--without-mingle",
            *extra,
        ]  # fmt: skip
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        return self

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=WORKER_STOP_DEADLINE_S)
        self.process = None
        remove_health_files(self.env)
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout_s: float = 60.0, *, count: int = 1) -> str:
        """The `count`-th match of `pattern` in the log, once the worker has written it."""
        deadline = time.monotonic() + timeout_s
        while len(found := re.findall(pattern, self.log())) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} not {count}x in the worker log after {timeout_s}s")
            time.sleep(0.05)  # a file has no change notification here; the deadline bounds it
        return str(found[count - 1])

    def outcomes(
        self, client: redis.Redis, command_ids: set[str], timeout_s: float = 60.0
    ) -> dict[str, CommandOutcome]:
        """Wait for the event of each command on this worker's stream."""
        stream = self.env["ACCOUNT_RESET_EVENTS_STREAM"]
        return wait_for_outcomes(client, stream, command_ids, timeout_s=timeout_s)


Fields = Mapping[Any, Any]


def follow_stream(
    client: redis.Redis, key: str, done: Callable[[list[Fields]], bool], timeout_s: float
) -> list[Fields]:
    """Read a stream from its start until `done(entries so far)`; TimeoutError at the deadline."""
    entries: list[Fields] = []
    last: Any = "0-0"
    deadline = time.monotonic() + timeout_s
    while not done(entries):
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise TimeoutError(f"{key}: condition not met after {timeout_s}s")
        reply = cast(
            list[tuple[Any, list[tuple[Any, Fields]]]],
            client.xread({key: last}, block=min(remaining_ms, 1000)),
        )
        for _key, batch in reply or []:
            for entry_id, fields in batch:
                last = entry_id
                entries.append(fields)
    return entries


def wait_until_acknowledged(client: redis.Redis, queue: str, timeout_s: float) -> None:
    """Until the worker has taken and acknowledged every message of `queue`: the queue, its
    reserved list and its unacknowledged hash are all empty (a worker stopped before its last
    acknowledgement hands that message back to the queue, and the next start replays it)."""
    keys = [queue, queue + ":reserved", queue + ":unacked"]
    deadline = time.monotonic() + timeout_s
    while client.exists(*keys):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue}: messages still unacknowledged after {timeout_s}s")
        time.sleep(0.05)  # Redis has no notification for an emptied key; the deadline bounds it


# Every Redis key a worker env of this test session names; removed when the session ends
# (tests delete what they look at; this catches what a failed or killed run left).
SESSION_KEYS: set[str] = set()


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


def worker_env(*, redis_url: str, database_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
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
    return env


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database of its own, dropped afterwards."""
    with _scratch_database(
        admin_url,
        create='CREATE DATABASE "{}"',
        drop='DROP DATABASE IF EXISTS "{}" WITH (FORCE)',
        isolation_level="AUTOCOMMIT",
    ) as url:
        yield url


@contextmanager
def mariadb_database(admin_url: str) -> Iterator[str]:
    """A fresh MariaDB (or MySQL) database of its own, dropped afterwards."""
    with _scratch_database(
        admin_url,
        create="CREATE DATABASE `{}` CHARACTER SET utf8mb4",
        drop="DROP DATABASE IF EXISTS `{}`",
    ) as url:
        yield url


@contextmanager
def _scratch_database(admin_url: str, *, create: str, drop: str, **engine: Any) -> Iterator[str]:
    name = unique("account_reset_test").replace("-", "_")
    admin = sa.create_engine(normalized_url(admin_url), **engine)
    with admin.connect() as connection:
        connection.exec_driver_sql(create.format(name))
    try:
        yield normalized_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(drop.format(name))
        admin.dispose()


class TaskEventRecorder:
    """Records the Celery events (the ones Flower shows) a broker carries, on a thread."""

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.app = Celery(broker=broker_url)
        self.events: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._capture, daemon=True)

    def __enter__(self) -> TaskEventRecorder:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=WORKER_STOP_DEADLINE_S)

    def _capture(self) -> None:
        with self.app.connection_for_read() as connection:
            self.receiver = self.app.events.Receiver(connection, handlers={"*": self._record})
            # wakeup asks every worker for a heartbeat, so a test can wait until it is heard.
            self.receiver.capture(limit=None, timeout=None, wakeup=True)

    def _record(self, event: dict[str, Any]) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float) -> None:
        with self.changed:
            if not self.changed.wait_for(
                lambda: any(predicate(e) for e in self.events), timeout=timeout_s
            ):
                raise TimeoutError("no matching Celery event before the deadline")
