"""`account-reset health`: passes while the worker consumes, fails once it stops consuming
though it is still running and connected (the state Celery has been known to get into after a
Redis reconnect), made here with Celery's own remote control: cancel_consumer. (Without any
worker: tests/integration/test_health.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tests.support.probes import Answer, health_until
from tests.support.workers import WorkerProcess, remove_health_files, worker_env

MAX_AGE_S = "4"


def wait_for_health(worker: WorkerProcess, code: int) -> Answer:
    return health_until(worker.env, lambda answer: answer.returncode == code, f"health exit {code}")


@pytest.fixture
def worker(redis_url: str, database_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = worker_env(
        redis_url=redis_url, database_url=database_url, ACCOUNT_RESET_HEALTH_MAX_AGE_S=MAX_AGE_S
    )
    running = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    yield running
    running.stop()
    remove_health_files(env)


def test_health_fails_when_the_worker_stops_consuming_though_still_connected(
    worker: WorkerProcess, redis_url: str
) -> None:
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    control = Celery(broker=redis_url, set_as_current=False)
    try:
        healthy = wait_for_health(worker, 0)
        control.control.cancel_consumer(queue, destination=[worker.nodename], reply=True)
        unhealthy = wait_for_health(worker, 1)
        still_connected = control.control.ping(destination=[worker.nodename], timeout=5)
        control.control.add_consumer(queue, destination=[worker.nodename], reply=True)
        recovered = wait_for_health(worker, 0)
    finally:
        control.close()

    print(f"\n{healthy.stdout.strip()} / {unhealthy.stderr.strip()} / {recovered.stdout.strip()}")
    assert healthy.stdout.startswith("healthy")
    assert unhealthy.stderr.startswith("unhealthy: last consumed")
    assert still_connected, "the worker should still answer: connected, not consuming"
