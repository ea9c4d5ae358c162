"""The pool's placement (issue 15, target 4): a password node beside a sessions node gives its
bcrypt processes a lower priority and the cores it names, so revocations keep p99 under 50 ms
through a burst (BENCHMARKS.md: p99 in seconds without them on 2 cores, 13 to 25 ms with)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.probes import CLI
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess, clean_env, pool_children, worker_env

DEADLINE_S = 60.0


def test_pool_processes_run_niced_on_the_cores_named(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    first = min(os.sched_getaffinity(0))
    env = worker_env(
        redis_url=redis_url, database_url=database_url,
        ACCOUNT_RESET_POOL_NICE="10", ACCOUNT_RESET_POOL_CPUS=str(first),
    )  # fmt: skip
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    worker.wait_until_ready()
    try:
        children = poll_until(lambda: pool_children(worker) or None, DEADLINE_S, "pool processes")

        def placed() -> bool | None:
            niced = all(os.getpriority(os.PRIO_PROCESS, pid) == 10 for pid in children)
            pinned = all(os.sched_getaffinity(pid) == {first} for pid in children)
            return (niced and pinned) or None

        assert poll_until(placed, DEADLINE_S, "the pool niced and pinned")
        main = worker.pids()[0]
        assert os.getpriority(os.PRIO_PROCESS, main) == 0
        assert os.sched_getaffinity(main) == os.sched_getaffinity(0)
    finally:
        worker.stop()
        worker.remove_keys(redis_url)


@pytest.mark.parametrize("cpus", ["x", "1-", "-1", ""])
def test_a_bad_cpu_list_is_one_line_naming_the_setting(cpus: str) -> None:
    result = subprocess.run(
        [CLI, "db", "current"],
        env=clean_env(
            ACCOUNT_RESET_ENVIRONMENT="development", ACCOUNT_RESET_POOL_CPUS=cpus,
            ACCOUNT_RESET_DATABASE_URL="sqlite:///:memory:",
        ),
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    if not cpus:
        assert result.returncode == 0, result.stderr  # empty: unset
        return
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: invalid settings: ACCOUNT_RESET_POOL_CPUS must be a CPU list")
    )
