"""No secret at rest in the broker, none on display: searched for, everywhere, with sealing on.

The worker runs on a Redis of its own (append-only file on), so every key in it is the
worker's: queue, reserved list, unacknowledged messages, result stream, dead letters, attempt
counts, cache. Logging is at DEBUG and task events are on. Both commands run with distinctive
secrets, sealed by the Python client; then every Redis key and value, the append-only file, the
worker's log and the task events are searched for each secret. Message bodies are base64 in
kombu's envelope, so every body found is decoded and searched too.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from client import AccountResetClient, ClientSettings
from client.events import stream_outcomes, wait_for_outcomes
from client.raw_message import raw_protocol2_message, task_id_of
from tests.support.celery_events import TaskEventRecorder
from tests.support.ids import unique
from tests.support.keys import TEST_SEALING_PUBLIC_KEY
from tests.support.seeding import Seeder
from tests.support.services import PrivateRedis
from tests.support.workers import WorkerProcess, wait_until_acknowledged, worker_env

DEADLINE_S = 60.0
BASE64_BODY = re.compile(rb'"body": ?"([A-Za-z0-9+/=]+)"')


def expanded(data: bytes) -> bytes:
    """`data`, followed by every base64 message body in it, decoded (and theirs, in turn)."""
    found = [data]
    for match in BASE64_BODY.finditer(data):
        try:
            found.append(expanded(base64.b64decode(match.group(1), validate=True)))
        except binascii.Error:
            continue
    return b"\n".join(found)


def redis_dump(client: redis.Redis) -> tuple[bytes, list[bytes]]:
    """Every key and value in the server, as bytes to search; and the keys."""
    parts: list[bytes] = []
    keys = list(client.scan_iter(count=1000))
    # By the TYPE reply, bytes from this client.
    readers: dict[bytes | str, Callable[[bytes], Any]] = {
        b"string": client.get,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"hash": client.hgetall,
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        b"stream": client.xrange,
    }
    for key in keys:
        value = readers[client.type(key)](key)
        parts.append(key)
        parts.extend(expanded(item) for item in _flat(value))
    return b"\n".join(parts), keys


def _flat(value: object) -> Iterator[bytes]:
    if isinstance(value, bytes):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _flat(key)
            yield from _flat(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _flat(item)
    elif value is not None:
        yield str(value).encode()


def aof_bytes(directory: Path) -> bytes:
    files = [p for p in directory.rglob("*.aof*") if p.is_file()]
    assert files, "no append-only file"
    return expanded(b"\n".join(p.read_bytes() for p in files))


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


def test_no_secret_in_redis_its_aof_the_logs_or_the_task_events(
    private_redis: PrivateRedis, database_url: str, seeder: Seeder, tmp_path: Path
) -> None:
    url = private_redis.url
    env = worker_env(
        redis_url=url,
        database_url=database_url,
        ACCOUNT_RESET_REQUIRE_SEALED="true",
        ACCOUNT_RESET_LOG_LEVEL="DEBUG",
        ACCOUNT_RESET_TASK_EVENTS="true",
    )
    client = redis.Redis.from_url(url)
    settings = ClientSettings(
        broker_url=url, queue=env["ACCOUNT_RESET_QUEUE"], sealing_public_key=TEST_SEALING_PUBLIC_KEY
    )
    producer = AccountResetClient(settings)
    user, other = seeder.account(), seeder.account()
    code = seeder.code(user, unique("CODE-SECRET"))
    password = unique("PASSWORD-SECRET")[:40]
    wrong_code = unique("WRONG-CODE-SECRET")
    plaintext = unique("PLAINTEXT-SECRET")[:40]
    old_hashes = [seeder.load(user.accountid).password_hash or "", seeder.hasher.lookup_hash(code)]

    # Sent before the worker starts: what the broker holds while commands wait in the queue.
    sent = {
        producer.reset_account_password(
            username=user.username, secret_code=wrong_code, new_password=password
        ): "wrong code",
        producer.reset_account_password(
            username=user.username, secret_code=code, new_password=password
        ): "right code",
        producer.reset_session_key(other.accountid): "session key",
    }
    waiting, _ = redis_dump(client)
    # A producer that does not seal: refused (invalid-payload), its secret never shown.
    unsealed = raw_protocol2_message(
        "reset-account-password",
        {"username": plaintext, "secret-code": plaintext, "new-password": plaintext},
        env["ACCOUNT_RESET_QUEUE"],
    )
    poison = raw_protocol2_message(
        "reset-pasword", {"new-password": plaintext}, env["ACCOUNT_RESET_QUEUE"]
    )
    client.lpush(env["ACCOUNT_RESET_QUEUE"], unsealed, poison)
    sent[task_id_of(unsealed)] = "plaintext"

    with TaskEventRecorder(url) as recorder:
        worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
        try:
            outcomes = wait_for_outcomes(
                client, env["ACCOUNT_RESET_EVENTS_STREAM"], set(sent), timeout_s=DEADLINE_S
            )
            recorder.wait_for(lambda e: e.get("type") == "task-succeeded", DEADLINE_S)
            worker.wait_for_log("dead-lettered task reset-pasword", DEADLINE_S)
            # Stopped before its last acknowledgement, a worker hands that message back to
            # the queue, where the unsealed producer's plaintext would be found at rest.
            wait_until_acknowledged(client, env["ACCOUNT_RESET_QUEUE"], DEADLINE_S)
        finally:
            worker.stop()
    producer.close()

    codes = {sent[i]: str(outcomes[i].code or "success") for i in sent}
    assert codes == {
        "wrong code": "invalid-reset-code",
        "right code": "success",
        "session key": "success",
        "plaintext": "invalid-payload",
    }
    changed, ended = seeder.load(user.accountid), seeder.load(other.accountid)
    secrets = {
        "new password": password,
        "reset code": code,
        "wrong reset code": wrong_code,
        "unsealed secret": plaintext,
        "password hash (new)": changed.password_hash or "",
        "password hash (old)": old_hashes[0],
        "reset code hash": old_hashes[1],
        "session key (password reset)": changed.session_key or "",
        "session key (reset-session-key)": ended.session_key or "",
        "username": user.username,
    }
    assert all(len(s) >= 12 for s in secrets.values())
    at_rest, keys = redis_dump(client)
    places = {
        "queue while waiting": waiting,
        "every Redis key and value": at_rest,
        "worker log (DEBUG)": worker.log().encode(),
        "task events": json.dumps(recorder.events, default=str).encode(),
        "result events": json.dumps([e.model_dump(mode="json") for e in stream_outcomes(
            client, env["ACCOUNT_RESET_EVENTS_STREAM"])]).encode(),
    }  # fmt: skip
    aof = aof_bytes(private_redis.directory)
    hits = {
        (secret, place): data.count(value.encode())
        for secret, value in secrets.items()
        for place, data in places.items()
    }
    # Only the producer that did not seal put a plaintext secret into the broker's file.
    hits.update({(s, "append-only file"): aof.count(v.encode()) for s, v in secrets.items()})

    print(
        f"\ncommands {len(sent) + 1}, codes {sorted(codes.values())} and a dead letter, "
        f"redis keys {sorted(k.decode().split(':')[-1] for k in keys)}, "
        f"task events {len(recorder.events)}, bytes searched "
        f"{sum(map(len, places.values())) + len(aof)}, secrets {len(secrets)}, "
        f"places {len(places) + 1}, hits {sum(hits.values())} "
        f"(of which the unsealed producer's own message in the AOF: "
        f"{hits[('unsealed secret', 'append-only file')]})"
    )
    assert hits[("unsealed secret", "append-only file")] > 0  # the search does find a secret
    del hits[("unsealed secret", "append-only file")]
    assert {where: n for where, n in hits.items() if n} == {}
