"""Poison messages and exhausted retries end as dead letters; operators list, retry and drop them.

Every test runs a real worker process; the `failed` commands run as the real console script.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import redis

from client.events import read_outcome
from client.raw_message import raw_protocol2_message, task_id_of
from schemas import CommandOutcome
from tests.support.ids import unique
from tests.support.messages import own_sessions_reset
from tests.support.probes import CLI
from tests.support.seeding import Seeder
from tests.support.streams import Fields, follow_stream
from tests.support.workers import WorkerProcess, worker_env

DEADLINE_S = 60.0


def run_cli(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, check=check, timeout=DEADLINE_S
    )


def letters_json(env: dict[str, str]) -> list[dict[str, Any]]:
    listed = run_cli(env, "failed", "list", "--json").stdout
    return [json.loads(line) for line in listed.splitlines()]


def poison_messages(queue: str, secret: str) -> dict[str, str]:
    """Each kind of message the worker must refuse, each carrying a secret to look for."""
    secrets = {"username": secret, "new-password": secret, "secret-code": secret}
    no_task_header = json.loads(raw_protocol2_message("x", secrets, queue))
    del no_task_header["headers"]["task"]
    return {
        "undecodable": raw_protocol2_message(
            "reset-account-password", {}, queue, body=f"{{not json {secret}".encode()
        ),
        "unknown task": raw_protocol2_message("reset-pasword", secrets, queue),
        "kwargs not an object": raw_protocol2_message(
            "reset-account-password", {}, queue, body=json.dumps([[], [secret], {}]).encode()
        ),
        "body not a list": raw_protocol2_message(
            "reset-account-password", {}, queue, body=json.dumps(secret).encode()
        ),
        "body too large": raw_protocol2_message(
            "reset-account-password", {**secrets, "padding": "x" * 100_000}, queue
        ),
        # Over MAX_ENTRY_BYTES: dropped unparsed, so not even its task id is known.
        "entry far too large": raw_protocol2_message(
            "reset-account-password", {**secrets, "padding": "x" * 2_000_000}, queue
        ),
        "pickle": raw_protocol2_message(
            "reset-account-password",
            {},
            queue,
            body=b"\x80\x04\x95" + secret.encode(),
            content_type="application/x-python-serialize",
        ),
        "no task name": json.dumps(no_task_header),
    }


EXPECTED_REASONS = {
    "undecodable": "undecodable",
    "unknown task": "unknown-task",
    "kwargs not an object": "invalid-message",
    "body not a list": "invalid-message",
    "body too large": "too-large",
    "entry far too large": "too-large",
    "pickle": "invalid-message",
    "no task name": "invalid-message",
}
# Poison that names one of the two commands gets an answer on the stream.
ANSWERED = {"undecodable", "kwargs not an object", "body not a list", "body too large", "pickle"}


def test_poison_messages_are_dead_lettered_and_the_queue_moves_on(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    env = running_worker.env
    queue, letters_key = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]
    redis_client.delete(letters_key)
    secret = unique("distinctive-secret")
    poison = poison_messages(queue, secret)
    user = seeder.account()
    good = own_sessions_reset(user.accountid, queue)

    for message in [*poison.values(), good]:
        redis_client.rpush(queue, message)  # taken from the right: oldest first
    ids = {kind: task_id_of(message) for kind, message in poison.items() if kind in ANSWERED}
    found = running_worker.outcomes(redis_client, {task_id_of(good), *ids.values()})

    assert found[task_id_of(good)].status == "success"
    assert {kind: found[task_id].code for kind, task_id in ids.items()} == dict.fromkeys(
        ANSWERED, "invalid-payload"
    )
    letters = letters_json(env)
    by_task_id = {letter["task_id"]: letter for letter in letters}
    reasons = {
        kind: by_task_id[None if kind == "entry far too large" else task_id_of(m)]["reason"]
        for kind, m in poison.items()
    }
    print(f"\npoison sent {len(poison)}, dead letters {len(letters)}, reasons {reasons}")
    assert reasons == EXPECTED_REASONS
    assert len(letters) == len(poison)
    assert seeder.load(user.accountid).session_key_number == 2
    raw_letters = str(redis_client.xrange(letters_key))
    for where in (raw_letters, json.dumps(letters), running_worker.log()):
        assert secret not in where
    unknown = by_task_id[task_id_of(poison["unknown task"])]
    assert unknown["sealed_fields"] == ["new-password", "secret-code", "username"]
    assert unknown["retryable"] is True


def test_exhausted_retries_dead_letter_the_command_and_a_retry_applies_it_once(
    redis_url: str,
    database_url: str,
    seeder: Seeder,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """The database is out of reach: dead letter and internal-error; once it is back, a retry
    applies the password reset under the same command_id, and repeating it is only a replay."""
    user = seeder.account()
    code = seeder.code(user)
    password = unique("distinctive-password")[:40]
    broken = worker_env(
        redis_url=redis_url,
        database_url="postgresql://postgres@127.0.0.1:1/unreachable",
        ACCOUNT_RESET_MAX_RETRIES="1",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="1",
    )
    healthy = {**broken, "ACCOUNT_RESET_DATABASE_URL": database_url}
    queue, stream = broken["ACCOUNT_RESET_QUEUE"], broken["ACCOUNT_RESET_EVENTS_STREAM"]
    command_id = unique("cmd")
    kwargs = {
        "username": user.username, "new-password": password, "secret-code": code,
        "command_id": command_id,
    }  # fmt: skip
    worker = WorkerProcess(env=broken, log_path=tmp_path / "broken.log").start()
    try:
        redis_client.lpush(queue, raw_protocol2_message("reset-account-password", kwargs, queue))
        assert worker.outcomes(redis_client, {command_id})[command_id].code == "internal-error"
    finally:
        worker.stop()

    [letter] = letters_json(healthy)
    assert (letter["reason"], letter["command_id"], letter["retryable"]) == (
        "retries-exhausted", command_id, True,
    )  # fmt: skip
    shown = run_cli(healthy, "failed", "show", letter["letter_id"]).stdout
    assert json.loads(shown)["detail"] == "OperationalError"
    raw = str(redis_client.xrange(healthy["ACCOUNT_RESET_DEAD_LETTERS_KEY"]))
    for secret in (password, code, user.username):
        assert secret not in raw + shown

    worker = WorkerProcess(env=healthy, log_path=tmp_path / "healthy.log").start()
    try:
        retried = run_cli(healthy, "failed", "retry", letter["letter_id"])
        assert f"retried as command_id {command_id}" in retried.stdout
        success = wait_for_status(redis_client, stream, command_id, "success")
        assert letters_json(healthy) == []
        again = run_cli(healthy, "failed", "retry", letter["letter_id"], check=False)
        assert again.returncode != 0
        assert "no dead letter" in again.stderr
        # An operator (or producer) sending the same command again: a replay, same event_id.
        redis_client.lpush(queue, raw_protocol2_message("reset-account-password", kwargs, queue))
        replay = wait_for_count(redis_client, stream, command_id, 3)
        assert replay[-1].event_id == success.event_id
    finally:
        worker.stop()
        redis_client.delete(queue, stream, healthy["ACCOUNT_RESET_DEAD_LETTERS_KEY"])

    account = seeder.load(user.accountid)
    assert account.session_key_number == 2
    assert seeder.hasher.password_matches(password, account.password_hash or "")


def test_without_a_payload_key_secrets_are_withheld_and_the_letter_cannot_be_retried(
    redis_url: str, database_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = worker_env(redis_url=redis_url, database_url=database_url, ACCOUNT_RESET_PAYLOAD_KEY="")
    queue, secret = env["ACCOUNT_RESET_QUEUE"], unique("distinctive-secret")
    message = raw_protocol2_message("reset-pasword", {"new-password": secret}, queue)
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    try:
        redis_client.lpush(queue, message)
        letters = wait_for_letters(env, 1)
        assert letters[0]["withheld_fields"] == ["new-password"]
        assert letters[0]["retryable"] is False
        refused = run_cli(env, "failed", "retry", letters[0]["letter_id"], check=False)
        assert refused.returncode == 1
        assert "withheld" in refused.stderr
        dropped = run_cli(env, "failed", "drop", "--yes", letters[0]["letter_id"])
        assert "dropped" in dropped.stdout
        assert letters_json(env) == []
    finally:
        worker.stop()
        redis_client.delete(queue, env["ACCOUNT_RESET_EVENTS_STREAM"])


def test_failed_commands_need_ids_or_all(redis_url: str, database_url: str) -> None:
    env = worker_env(redis_url=redis_url, database_url=database_url)
    assert run_cli(env, "failed", "drop", "--yes", check=False).returncode == 2  # no ids, no --all
    assert run_cli(env, "failed", "retry", "--all").returncode == 0  # nothing to retry
    missing = run_cli(env, "failed", "show", "1-0", check=False)
    assert missing.returncode == 1
    assert "no dead letter 1-0" in missing.stderr
    listed = run_cli(env, "failed", "list")
    assert "0 dead letter(s)" in listed.stderr


def wait_for_status(client: redis.Redis, stream: str, command_id: str, status: str) -> Any:
    return wait_for_count(client, stream, command_id, 1, status=status)[-1]


def wait_for_count(
    client: redis.Redis, stream: str, command_id: str, count: int, *, status: str | None = None
) -> list[CommandOutcome]:
    """The events of this command (of this status), once there are `count` of them."""

    def ours(entries: list[Fields]) -> list[CommandOutcome]:
        events = [read_outcome(fields) for fields in entries]
        return [
            e for e in events if e.command_id == command_id and status in (None, e.status.value)
        ]

    return ours(follow_stream(client, stream, lambda e: len(ours(e)) >= count, DEADLINE_S))


def wait_for_letters(env: dict[str, str], count: int) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(env["ACCOUNT_RESET_BROKER_URL"])
    try:
        key = env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]
        follow_stream(client, key, lambda entries: len(entries) >= count, DEADLINE_S)
    finally:
        client.close()
    return letters_json(env)
