"""Redis refusing commands mid-stream (full, busy, loading): the worker waits, nothing is lost.

Issue 13, finding 3: with `maxmemory` reached for 8 s the worker exited at once ("Unrecoverable
error: OutOfMemoryError"): a full Redis refuses BLMOVE, and the transport caught only connection
errors. The Redis is the test's own (tests/faults/services.py), so filling it disturbs no one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.faults.harness import CommandStream
from tests.support.probes import health_until
from tests.support.seeding import Seeder
from tests.support.services import PrivateRedis
from tests.support.workers import WorkerProcess, worker_env
from worker.security.hashing import Hasher

COMMANDS = 300
ACCOUNTS = 60
# How long Redis refuses: the fault itself, not a wait for something to happen.
REFUSAL_S = 8.0
PROBE_DEADLINE_S = 60.0
# A script that keeps Redis BUSY for as long as the test says (it answers nothing meanwhile).
BUSY_SCRIPT = """
local stop_at = tonumber(ARGV[1])
while tonumber(redis.call('TIME')[1]) < stop_at do end
return 1
"""


@pytest.fixture
def broker() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


def _env(
    broker: PrivateRedis, database_url: str, *, visibility_timeout_s: int = 20
) -> dict[str, str]:
    return worker_env(
        redis_url=broker.url,
        database_url=database_url,
        ACCOUNT_RESET_VISIBILITY_TIMEOUT_S=str(visibility_timeout_s),
        ACCOUNT_RESET_RESTORE_INTERVAL_S="1",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S=str(min(4, visibility_timeout_s - 1)),
        ACCOUNT_RESET_MAX_RETRIES="10",
    )


def probe_until(env: dict[str, str], *, says: str) -> str:
    """Run `account-reset health` until its answer starts with `says`; returns the answer."""
    answer = health_until(
        env,
        lambda answer: (answer.stdout or answer.stderr).strip().startswith(says),
        f"health saying {says!r}",
        PROBE_DEADLINE_S,
    )
    return (answer.stdout or answer.stderr).strip()


def _full(client: redis.Redis) -> None:
    """Redis over its maxmemory: every command that may grow memory is refused (OOM)."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used // 2))


# 20 s: a refused command waits in place (up to 10 s) and outlasts the 8 s. 5 s: it waits
# 2.5 s, then Celery's retry is refused too, and the delivery is put back (or left
# unacknowledged, the put-back refused as well) for the restore sweep.
@pytest.mark.parametrize("visibility_timeout_s", [20, 5])
def test_redis_full_for_8s_mid_stream_stops_nothing_and_loses_nothing(
    visibility_timeout_s: int,
    broker: PrivateRedis,
    postgres_url: str,
    hasher: Hasher,
    tmp_path: Path,
) -> None:
    """Finding 3: maxmemory below use for 8 s mid-stream of 300 reset-session-key over 60
    accounts; the worker used to exit at once with Unrecoverable error: OutOfMemoryError."""
    seeder = Seeder(postgres_url, hasher)
    env = _env(broker, postgres_url, visibility_timeout_s=visibility_timeout_s)
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    assert worker.process is not None
    main_pid = worker.process.pid
    commands = CommandStream.plan(seeder, worker, accounts=ACCOUNTS, count=COMMANDS)
    client = redis.Redis.from_url(broker.url)
    try:
        probe_until(env, says="healthy")
        commands.push(client)
        commands.wait_for_progress(client, COMMANDS // 4)
        _full(client)
        full_at = time.monotonic()
        during = probe_until(env, says="unhealthy: Redis refuses writes (OOM)")
        events_while_full = client.xlen(commands.stream)
        time.sleep(max(REFUSAL_S - (time.monotonic() - full_at), 0))
        client.config_set("maxmemory", "0")
        figures = commands.verify(
            seeder,
            client,
            f"Redis full (OOM) {REFUSAL_S:.0f}s, visibility timeout {visibility_timeout_s}s",
        )
        after = probe_until(env, says="healthy")
        dead_letters = client.xlen(env["ACCOUNT_RESET_DEAD_LETTERS_KEY"])
        alive = worker.process is not None and worker.process.poll() is None
        same_pid = worker.process is not None and worker.process.pid == main_pid
    finally:
        worker.stop()
        seeder.engine.dispose()
    log = worker.log()
    refusals = log.count("Redis refused")
    print(
        f"dead letters {dead_letters}, refusal notes logged {refusals},"
        f" events while full {events_while_full}; health during: {during!r}; after: {after!r}"
    )
    assert alive, "the worker's main process must live through the refusal"
    assert same_pid
    assert "Unrecoverable error" not in log
    assert figures["applied"] == COMMANDS
    assert dead_letters == 0
    assert "dead-lettered" not in log
    assert refusals > 0


def _busy(broker: PrivateRedis) -> None:
    """BUSY: a Lua script runs past `busy-reply-threshold` (100 ms here) for 4 s; every other
    client is answered `BUSY Redis is busy running a script` meanwhile."""
    client = redis.Redis.from_url(broker.url)
    client.config_set("busy-reply-threshold", "100")
    client.eval(BUSY_SCRIPT, 0, int(client.time()[0]) + 4)


def test_redis_busy_with_a_script_mid_stream_stops_nothing(
    postgres_url: str, hasher: Hasher, tmp_path: Path
) -> None:
    """BUSY (a 4 s Lua script) mid-stream of 100 reset-session-key over 30 accounts: the worker
    used to exit with Unrecoverable error: ResponseError (BUSY, refusing the MULTI of a take)."""
    kind = "busy"
    seeder = Seeder(postgres_url, hasher)
    with PrivateRedis() as broker:
        env = _env(broker, postgres_url)
        worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
        assert worker.process is not None
        main_pid = worker.process.pid
        commands = CommandStream.plan(seeder, worker, accounts=ACCOUNTS // 2, count=COMMANDS // 3)
        client = redis.Redis.from_url(broker.url)
        try:
            commands.push(client)
            commands.wait_for_progress(client, COMMANDS // 12)
            # Made again until the worker meets the refusal: bounded by the tries, not a sleep.
            for _ in range(3):
                _busy(broker)  # returns when the script ends
                if f"({kind})" in worker.log():
                    break
            figures = commands.verify(seeder, client, "Redis BUSY (a 4 s script) mid-stream")
            alive = worker.process is not None and worker.process.poll() is None
            same_pid = worker.process is not None and worker.process.pid == main_pid
            dead_letters = client.xlen(env["ACCOUNT_RESET_DEAD_LETTERS_KEY"])
        except BaseException:
            print(f"--- redis-server log ---\n{broker.log()}")
            raise
        finally:
            worker.stop()
            seeder.engine.dispose()
    log = worker.log()
    refusals = log.count(f"({kind}): will try again")
    print(f"dead letters {dead_letters}, {kind} refusals noted {refusals}")
    assert alive
    assert same_pid
    assert "Unrecoverable error" not in log
    assert figures["applied"] == COMMANDS // 3
    assert dead_letters == 0
    assert refusals > 0


def test_a_redis_refusing_writes_when_the_worker_declares_its_queue_stops_nothing(
    postgres_url: str, hasher: Hasher, tmp_path: Path
) -> None:
    """Found while testing Sentinel: a master with too few replicas refuses writes (NOREPLICAS),
    and the queue declaration every consumer start and reconnect makes is a write, which stopped
    the worker (Unrecoverable error: ResponseError, SADD of a pipeline). The worker now treats
    it as a lost connection and reconnects: here it starts against such a Redis, stays up, and
    once Redis takes writes again applies 30 commands over 10 accounts."""
    seeder = Seeder(postgres_url, hasher)
    with PrivateRedis() as broker:
        admin = redis.Redis.from_url(broker.url)
        admin.config_set("min-replicas-to-write", "1")  # no replica: every write refused
        env = _env(broker, postgres_url)
        worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
        assert worker.process is not None
        main_pid = worker.process.pid
        try:
            worker.wait_for_log(r"Redis refused the queue declaration \(noreplicas\)")
            worker.wait_for_log(r"Trying to re-establish the connection", count=2)
            alive_while_refused = worker.process.poll() is None
            admin.config_set("min-replicas-to-write", "0")
            commands = CommandStream.plan(seeder, worker, accounts=10, count=30)
            commands.push(admin)
            figures = commands.verify(seeder, admin, "NOREPLICAS while declaring the queue")
            same_pid = worker.process.poll() is None and worker.process.pid == main_pid
        finally:
            worker.stop()
            seeder.engine.dispose()
    assert alive_while_refused
    assert same_pid
    assert "Unrecoverable error" not in worker.log()
    assert figures["applied"] == 30
