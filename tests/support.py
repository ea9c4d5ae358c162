"""Helpers the tests share: real worker processes, databases, and ids that never collide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from worker.database import normalized_url

WORKER_STOP_DEADLINE_S = 60
TEST_HASH_KEY = "test-hash-key-" + "k" * 20
TEST_BCRYPT_ROUNDS = 4


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class WorkerProcess:
    """A real `celery -A worker worker` process with its own queue, stream and database."""

    env: dict[str, str]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> WorkerProcess:
        self.argv = [
            sys.executable, "-m", "celery", "-A", "worker", "worker",
            f"--queues={self.env['ACCOUNT_RESET_QUEUE']}",
            f"--hostname={unique('test')}@%h",
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
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def worker_env(*, redis_url: str, database_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
    env.update(
        {
            "ACCOUNT_RESET_BROKER_URL": redis_url,
            "ACCOUNT_RESET_DATABASE_URL": database_url,
            "ACCOUNT_RESET_QUEUE": unique("account-reset-test"),
            "ACCOUNT_RESET_EVENTS_STREAM": unique("account-reset-test") + ":events",
            "ACCOUNT_RESET_HASH_KEY": TEST_HASH_KEY,
            "ACCOUNT_RESET_BCRYPT_ROUNDS": str(TEST_BCRYPT_ROUNDS),
            "ACCOUNT_RESET_APPID": "test-app",
            "ACCOUNT_RESET_CACHE_URL": redis_url,
            "ACCOUNT_RESET_WORKER_CONCURRENCY": "2",
        }
    )
    env.update(overrides)
    return env


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database of its own, dropped afterwards."""
    name = unique("account_reset_test").replace("-", "_")
    admin = sa.create_engine(normalized_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield normalized_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
