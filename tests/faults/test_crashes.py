"""SIGKILL mid-stream, of the worker's main process and of its pool children."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis

from tests.faults.harness import CommandStream, crash_env, kill_main, wait_gone
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess, pool_children
from worker.security.hashing import Hasher

KILLS = 3
COMMANDS = 600


def test_sigkill_of_the_main_process_mid_stream_applies_each_command_once(
    redis_url: str,
    postgres_url: str,
    hasher: Hasher,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    seeder = Seeder(postgres_url, hasher)
    worker = WorkerProcess(env=crash_env(redis_url, postgres_url), log_path=tmp_path / "w.log")
    commands = CommandStream.plan(seeder, worker, accounts=60, count=COMMANDS)
    commands.push(redis_client)
    orphans: list[int] = []
    try:
        for kill in range(1, KILLS + 1):
            worker.start()
            commands.wait_for_progress(redis_client, kill * COMMANDS // (KILLS + 2))
            orphans += kill_main(worker)
        worker.start()
        commands.verify(seeder, redis_client, f"SIGKILL main process x{KILLS}")
    finally:
        worker.stop()
        wait_gone(orphans)
        commands.delete(redis_client)
        seeder.engine.dispose()


def test_sigkill_of_pool_children_mid_stream_applies_each_command_once(
    redis_url: str,
    postgres_url: str,
    hasher: Hasher,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    seeder = Seeder(postgres_url, hasher)
    worker = WorkerProcess(env=crash_env(redis_url, postgres_url), log_path=tmp_path / "w.log")
    commands = CommandStream.plan(seeder, worker, accounts=60, count=COMMANDS)
    worker.start()
    commands.push(redis_client)
    try:
        for kill in range(1, KILLS + 1):
            commands.wait_for_progress(redis_client, kill * COMMANDS // (KILLS + 2))
            os.kill(pool_children(worker)[0], signal.SIGKILL)
            # The next kill only once billiard has seen this death and replaced the child.
            worker.wait_for_log(r"exited with 'signal 9 \(SIGKILL\)'", count=kill)
        figures = commands.verify(seeder, redis_client, f"SIGKILL pool child x{KILLS}")
    finally:
        worker.stop()
        commands.delete(redis_client)
        seeder.engine.dispose()
    assert figures["sent"] == COMMANDS
    assert worker.log().count("exited with 'signal 9 (SIGKILL)'") == KILLS
