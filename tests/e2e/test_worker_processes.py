"""Workers started as an operator starts them (issue 16, findings 1, 8, 9, 11): the real console
script or `celery -A worker worker`, with no option but those the test is about."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from client.events import wait_for_outcomes
from client.local_broker import RECORD_NAME
from tests.support.keys import TEST_BCRYPT_ROUNDS
from tests.support.probes import CLI
from tests.support.waiting import poll_until
from tests.support.workers import (
    CommandWorker,
    clean_env,
    remove_health_files,
    session_keys_of,
    worker_env,
)
from worker.db.migrate import upgrade
from worker.ops.health_notes import node_note, node_notes

DEADLINE_S = 60.0
CELERY = str(Path(sys.executable).parent / "celery")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=DEADLINE_S)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'accounts.db'}"
    upgrade(url)
    return url


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[CommandWorker]]:
    """The workers a test starts; stopped (SIGTERM, then SIGKILL) and their notes removed."""
    started: list[CommandWorker] = []
    yield started
    for worker in started:
        worker.stop()
        remove_health_files(worker.env)


def start(
    workers: list[CommandWorker], env: dict[str, str], log: Path, *options: str
) -> CommandWorker:
    worker = CommandWorker(env=env, log_path=log).start(*options)
    workers.append(worker)
    return worker


def test_finding_1_commands_without_a_broker_url_find_the_workers_embedded_redis(
    workers: list[CommandWorker], sqlite_url: str, tmp_path: Path
) -> None:
    """Finding 1: `account-reset worker` with no broker URL ran an embedded Redis on a random
    port while `enqueue` with no URL used 127.0.0.1:6379: `--wait` ended with "no event". The
    worker now records its embedded Redis for this user, and `enqueue --wait` finds it."""
    runtime = tmp_path / "run"
    development = {
        "XDG_RUNTIME_DIR": str(runtime),
        "ACCOUNT_RESET_HEALTH_FILE": str(tmp_path / "worker.health"),
    }
    env = clean_env(
        ACCOUNT_RESET_DATABASE_URL=sqlite_url,
        ACCOUNT_RESET_BCRYPT_ROUNDS=str(TEST_BCRYPT_ROUNDS),
        **development,
    )
    worker = start(workers, env, tmp_path / "worker.log", "--concurrency=1")
    url = worker.wait_for_log(r"embedded Redis listening at (redis://\S+)")
    assert worker.process is not None
    pid = worker.process.pid
    said = f"no ACCOUNT_RESET_BROKER_URL: using the embedded Redis of worker pid {pid} at {url}"
    record = runtime / "account-reset" / RECORD_NAME
    assert record.stat().st_mode & 0o777 == 0o600

    producer = clean_env(**development)
    sent = run(
        producer, "enqueue", "reset-session-key", "--accountid", "acct_nobody", "--wait", "60"
    )
    listed = run(env, "failed", "list")

    print(f"\n{sent.stderr.strip()} / {sent.stdout.strip()}")
    assert "outcomes: invalid-accountid 1" in sent.stdout, sent.stdout + sent.stderr
    assert said in sent.stderr.splitlines()
    assert listed.returncode == 0, listed.stderr
    assert said in listed.stderr.splitlines()
    assert "0 dead letter(s)" in listed.stderr

    assert worker.stop() == 0
    assert not record.exists(), "a stopped worker's record is removed"
    after = run(producer, "health")
    assert "no ACCOUNT_RESET_BROKER_URL: using redis://127.0.0.1:6379/0 (default)" in after.stderr


def test_finding_8_two_workers_on_one_host_have_their_own_name_and_note_and_stopping_shows_at_once(
    workers: list[CommandWorker], redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """Finding 8: every worker on a host wrote the same health file and was `celery@host`
    (DuplicateNodenameWarning), and the probe said healthy for 30 s after a worker stopped.
    Now each node has its own name and note, a stopped node is unhealthy at the next probe,
    and so is a killed one (its pid is gone)."""
    env = worker_env(redis_url=redis_url, database_url=sqlite_url)
    first = start(workers, env, tmp_path / "first.log", "--concurrency=1")
    second = start(workers, env, tmp_path / "second.log", "--concurrency=1")
    names = [first.node(), second.node()]
    health_file = Path(env["ACCOUNT_RESET_HEALTH_FILE"])
    poll_until(lambda: len(node_notes(health_file)) == 2, DEADLINE_S, "both nodes' notes")
    notes = node_notes(health_file)
    both = run(env, "health")
    alone = run(env, "health", "--node", names[0])

    assert first.stop() == 0
    stopped_at = time.monotonic()
    after_stop = run(env, "health", "--node", names[0])
    stop_seen_s = time.monotonic() - stopped_at
    others = run(env, "health")

    assert second.process is not None
    pid = second.process.pid
    pool = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    second.process.send_signal(signal.SIGKILL)
    second.process.wait(timeout=DEADLINE_S)
    for child in map(int, pool):  # orphaned by the kill
        os.kill(child, signal.SIGKILL)
    after_kill = run(env, "health")

    print(f"\n{names}; stop seen in {stop_seen_s:.2f} s: {after_stop.stderr.strip()}")
    print(f"killed: {after_kill.stderr.strip()}")
    host = socket.gethostname()
    assert all(re.fullmatch(rf"account-reset-\d+@{re.escape(host)}", name) for name in names)
    assert names[0] != names[1]
    assert sorted(notes) == sorted(node_note(health_file, name) for name in names)
    assert both.returncode == 0, both.stderr
    assert alone.returncode == 0, alone.stderr
    assert after_stop.returncode == 1
    assert "unhealthy: no note" in after_stop.stderr
    assert others.returncode == 0, "the other node still consumes"
    assert after_kill.returncode == 1
    assert f"unhealthy: worker pid {pid} has exited" in after_kill.stderr
    for worker in (first, second):
        assert "DuplicateNodenameWarning" not in worker.log()


def test_finding_9_celery_worker_is_the_same_worker_as_account_reset_worker(
    workers: list[CommandWorker], redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """Finding 9: `celery -A worker worker`, documented as the same worker, logged at WARNING,
    and lacked `account-reset worker`'s queue, gossip and mingle flags. Started with no option,
    it now consumes the settings' queue, logs at the settings' level and has a unique name."""
    env = worker_env(redis_url=redis_url, database_url=sqlite_url)
    celery = CommandWorker(
        env=env, log_path=tmp_path / "celery.log", command=[CELERY, "-A", "worker", "worker"]
    )
    workers.append(celery.start("--concurrency=1"))
    node = celery.node()  # Celery says "ready." at INFO: not shown at WARNING

    producer = Celery(broker=redis_url, set_as_current=False)
    sent = producer.send_task(
        "reset-session-key", kwargs={"accountid": "acct_nobody"}, queue=env["ACCOUNT_RESET_QUEUE"]
    )
    client = redis.Redis.from_url(redis_url)
    try:
        found = wait_for_outcomes(
            client, env["ACCOUNT_RESET_EVENTS_STREAM"], {sent.id}, timeout_s=DEADLINE_S
        )
    finally:
        producer.close()
        client.delete(*session_keys_of(env))
        client.close()

    assert found[sent.id].code == "invalid-accountid"
    assert node.startswith("account-reset-")
    log = celery.log()
    assert f".> {env['ACCOUNT_RESET_QUEUE']} exchange" in log, "it consumes the settings' queue"
    assert "INFO/MainProcess" in log
    assert "mingle" not in log.lower()


def test_finding_9_worker_help_shows_its_options_and_celerys() -> None:
    """Finding 9: `account-reset worker --help` showed only --help."""
    shown = run(clean_env(), "worker", "--help")
    assert shown.returncode == 0, shown.stderr
    for option in ("--sessions", "--concurrency", "--hostname", "--loglevel", "--queues"):
        assert option in shown.stdout


def test_finding_11_a_worker_that_fails_at_start_leaves_no_metrics_folder(
    workers: list[CommandWorker], redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    """Finding 11: a worker that failed at start (here: its metrics port taken) left its
    prometheus folder (account-reset-metrics-*) in the temporary directory."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = worker_env(
            redis_url=redis_url, database_url=sqlite_url, TMPDIR=str(temporary),
            ACCOUNT_RESET_METRICS_PORT=str(port),
        )  # fmt: skip
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        worker = start(workers, env, tmp_path / "worker.log", "--concurrency=1")
        assert worker.process is not None
        worker.process.wait(timeout=DEADLINE_S)  # Celery's exit code says 0 here

    assert "Address already in use" in worker.log()
    assert list(temporary.iterdir()) == []
    assert not Path(f"{env['ACCOUNT_RESET_HEALTH_FILE']}.d").exists()
