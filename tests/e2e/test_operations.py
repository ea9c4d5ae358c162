"""Operators: Prometheus metrics summed over the prefork pool, and JSON logs, from a real worker."""

from __future__ import annotations

import contextlib
import json
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from client.raw_message import raw_protocol2_message, task_id_of
from tests.support.ids import unique
from tests.support.messages import own_sessions_reset
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess, worker_env
from worker.dev.processes import free_port

SUCCESSES = 12
UNKNOWN_ACCOUNTS = 3
COUNTS_DEADLINE_S = 10.0


@pytest.fixture
def observed_worker(
    redis_url: str, database_url: str, tmp_path: Path, redis_client: redis.Redis
) -> Iterator[WorkerProcess]:
    env = worker_env(
        redis_url=redis_url,
        database_url=database_url,
        ACCOUNT_RESET_METRICS_PORT=str(free_port()),
        ACCOUNT_RESET_LOG_FORMAT="json",
        ACCOUNT_RESET_WORKER_CONCURRENCY="2",
    )
    metric_dirs = set(Path(tempfile.gettempdir()).glob("account-reset-metrics-*"))
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    yield worker
    worker.stop()
    redis_client.delete(env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"])
    left = set(Path(tempfile.gettempdir()).glob("account-reset-metrics-*")) - metric_dirs
    assert not left, "the worker should remove the metrics directory it made"


def scrape(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{worker.env['ACCOUNT_RESET_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # a fixed local URL
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def counts(worker: WorkerProcess) -> dict[str, float]:
    """What the metrics count of the test's messages."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    samples = scrape(worker)
    return {
        "success": value(
            samples, "account_reset_commands_total", command="reset-session-key", outcome="success"
        ),
        "invalid-accountid": value(
            samples, "account_reset_commands_total", command="reset-session-key",
            outcome="invalid-accountid",
        ),
        "password success": value(
            samples, "account_reset_commands_total", command="reset-account-password",
            outcome="success",
        ),
        "timed": value(
            samples, "account_reset_command_duration_seconds_count", command="reset-session-key"
        ),
        "published by the task": value(
            samples, "account_reset_publish_delay_seconds_count", by="task"
        ),
        "dead letters": value(samples, "account_reset_dead_letters_total", reason="unknown-task"),
        "queue depth": value(samples, "account_reset_queue_depth", queue=queue),
    }  # fmt: skip


def test_metrics_count_every_pool_process_and_logs_are_json_lines(
    observed_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    queue = observed_worker.env["ACCOUNT_RESET_QUEUE"]
    user = seeder.account()
    code = seeder.code(user)
    secret = unique("LOG-SECRET")[:40]
    messages = [
        own_sessions_reset(a.accountid, queue)
        for a in (seeder.account() for _ in range(SUCCESSES))
    ] + [
        raw_protocol2_message("reset-session-key", {"accountid": unique("acct_none")}, queue)
        for _ in range(UNKNOWN_ACCOUNTS)
    ] + [
        raw_protocol2_message(
            "reset-account-password",
            {"username": user.username, "secret-code": code, "new-password": secret}, queue,
        ),
    ]  # fmt: skip
    poison = raw_protocol2_message("no-such-task", {}, queue)
    redis_client.lpush(queue, poison, *messages)
    observed_worker.outcomes(redis_client, {task_id_of(m) for m in messages})
    observed_worker.wait_for_log("dead-lettered task no-such-task")

    expected = {
        "success": SUCCESSES,
        "invalid-accountid": UNKNOWN_ACCOUNTS,
        "password success": 1,
        "timed": SUCCESSES + UNKNOWN_ACCOUNTS,
        "published by the task": SUCCESSES + UNKNOWN_ACCOUNTS + 1,
        "dead letters": 1,
        "queue depth": 0,
    }
    # A pool process counts an event just after publishing it, so a scrape right after the last
    # event may miss that count (seen: 15 of 16 published, while looking into issue 16 #12).
    with contextlib.suppress(TimeoutError):
        poll_until(lambda: counts(observed_worker) == expected, COUNTS_DEADLINE_S, "the counts")
    counted = counts(observed_worker)
    processed_by = {
        json.loads(line)["processName"]
        for line in observed_worker.log().splitlines()
        if line.startswith("{") and '"command_id"' in line
    }
    print(f"\nmetrics {counted}, processed by {sorted(processed_by)}")
    assert counted == expected
    assert len(processed_by) == 2, "both pool processes should have taken commands"

    lines = [
        json.loads(line) for line in observed_worker.log().splitlines() if line.startswith("{")
    ]
    processed = [line for line in lines if "command_id" in line and "duration_ms" in line]
    assert len(processed) == len(messages)
    assert {line["outcome"] for line in processed} == {"success", "invalid-accountid"}
    assert all(
        line["command"] in {"reset-session-key", "reset-account-password"} for line in processed
    )
    assert secret not in observed_worker.log()
    assert code not in observed_worker.log()
