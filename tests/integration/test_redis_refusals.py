"""Redis refusing commands (issue 13, finding 3): told apart from other errors, on a real Redis,
never quoted, and reported by `account-reset health` while it lasts.

The Redis here is a private redis-server (tests/faults/services.py): filling it, or making it
a replica, must not touch the shared one. The whole-worker test is tests/faults/.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.probes import CLI
from tests.support.services import PrivateRedis
from tests.support.workers import worker_env
from worker.broker.refusals import (
    NOTE_FRESH_S,
    current_refusal,
    refusal_kind,
    refusal_note_path,
)
from worker.broker.task import is_transient
from worker.dev.processes import free_port
from worker.ops.health_notes import node_note

SECRET = "correct horse battery staple"  # in the MULTI that is refused


@pytest.fixture
def private_redis() -> Iterator[redis.Redis]:
    with PrivateRedis() as server:
        client = redis.Redis.from_url(server.url)
        yield client
        client.close()


def _refused(call: object) -> BaseException:
    try:
        call()  # type: ignore[operator]
    except redis.RedisError as exc:
        return exc
    raise AssertionError("Redis did not refuse")


def test_a_full_redis_is_a_refusal_also_inside_a_multi_and_never_quoted(
    private_redis: redis.Redis,
) -> None:
    """maxmemory below use (noeviction): SET, and a MULTI carrying a secret, both refused OOM."""
    used = int(private_redis.info("memory")["used_memory"])
    private_redis.config_set("maxmemory", str(used // 2))
    try:
        single = _refused(lambda: private_redis.set("k", "v"))

        def multi() -> None:
            with private_redis.pipeline() as pipe:
                pipe.zadd("z", {"tag": 1.0})
                pipe.hset("h", "tag", SECRET)
                pipe.execute()

        in_multi = _refused(multi)
    finally:
        private_redis.config_set("maxmemory", "0")
    assert refusal_kind(single) == "oom"
    assert refusal_kind(in_multi) == "oom"
    assert is_transient(single)
    assert is_transient(in_multi)


def test_a_replica_is_a_refusal(private_redis: redis.Redis) -> None:
    """READONLY: a replica of a master that is not there refuses every write."""
    private_redis.replicaof("127.0.0.1", str(free_port()))
    try:
        refused = _refused(lambda: private_redis.xadd("s", {"f": "v"}))
    finally:
        private_redis.replicaof("NO", "ONE")
    assert refusal_kind(refused) == "readonly"
    assert is_transient(refused)


def test_other_errors_are_not_refusals(private_redis: redis.Redis) -> None:
    private_redis.set("a-string", "v")
    wrong_type = _refused(lambda: private_redis.lpush("a-string", "x"))
    unknown = _refused(lambda: private_redis.execute_command("NO-SUCH-COMMAND"))  # type: ignore[no-untyped-call]
    assert refusal_kind(wrong_type) is None
    assert refusal_kind(unknown) is None
    assert not is_transient(wrong_type)
    # Replies redis-py has no class for are read by their first word.
    assert refusal_kind(redis.ResponseError("BUSY Redis is busy running a script.")) == "busy"
    assert refusal_kind(redis.ResponseError("MISCONF Redis is configured to save")) == "misconf"
    # redis-py's own classes for LOADING and MASTERDOWN (the latter a ClusterDownError).
    assert refusal_kind(redis.exceptions.BusyLoadingError("loading the dataset")) == "loading"
    assert refusal_kind(redis.exceptions.MasterDownError("link with MASTER is down")) == (
        "masterdown"
    )


@pytest.fixture
def health_env(tmp_path: Path) -> dict[str, str]:
    return worker_env(
        redis_url="redis://127.0.0.1:1/0",  # never reached: the refusal note answers first
        database_url="sqlite:///unused.db",
        ACCOUNT_RESET_HEALTH_FILE=str(tmp_path / "worker.health"),
    )


def _node(env: dict[str, str]) -> Path:
    """A worker node's liveness note, consuming now."""
    note = node_note(Path(env["ACCOUNT_RESET_HEALTH_FILE"]), "test@host")
    note.parent.mkdir(exist_ok=True)
    note.write_text(json.dumps({"consuming_at": time.time()}))
    return note


def _note(env: dict[str, str], *, kind: str, at: float) -> None:
    path = refusal_note_path(_node(env))
    path.write_text(json.dumps({"error": kind, "at": at, "pid": 1}))


def test_health_says_redis_refuses_writes_while_the_note_is_fresh(
    health_env: dict[str, str],
) -> None:
    _note(health_env, kind="oom", at=time.time())
    result = subprocess.run(
        [CLI, "health"], env=health_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "unhealthy: Redis refuses writes (OOM)"


def test_a_refusal_that_has_passed_is_not_reported(health_env: dict[str, str]) -> None:
    health_file = _node(health_env)
    now = time.time()
    _note(health_env, kind="readonly", at=now - NOTE_FRESH_S - 1)
    assert current_refusal(health_file, now=now) is None
    _note(health_env, kind="readonly", at=now)
    assert current_refusal(health_file, now=now) == "Redis refuses writes (READONLY: a replica)"
