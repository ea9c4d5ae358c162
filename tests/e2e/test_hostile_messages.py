"""Hostile queue entries against a real worker: nothing on the queue stops, steers or multiplies.

Found by an adversarial review (each test names its finding):
1. ~100 KB of JSON with 50,000 nested arrays crash-looped every worker (RecursionError).
2. `celery inspect active/reserved` (so Flower's worker page) showed plaintext secrets.
3. embedded callbacks had the worker send tasks to queues the producer chose; Celery's built-in
   tasks (`celery.accumulate`, ...) ran from the queue.
4. headers were unbounded (40 MB); an `eta` a day ahead came back at every restore sweep.
6. an oversized message's failure event carried the Celery task id, not the `command_id`.
"""

from __future__ import annotations

import base64
import bz2
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from client.raw_message import raw_protocol2_message, task_id_of
from tests.support.celery_events import TaskEventRecorder
from tests.support.databases import migrated_sqlite, wait_until_waiting
from tests.support.flower import start_flower
from tests.support.ids import unique
from tests.support.probes import http_until
from tests.support.seeding import Seeder
from tests.support.waiting import poll_until
from tests.support.workers import WorkerProcess, pool_children, worker_env
from worker.broker.transport import reserved_key
from worker.security.hashing import Hasher
from worker.streams.dead_letters import DeadLetterBox, Reason

DEADLINE_S = 60.0
PLAIN_PASSWORD_PREFIX = "plaintext-password-"
PLAIN_CODE_PREFIX = "plaintextcode"


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def worker(
    redis_url: str, hostile_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    env = worker_env(redis_url=redis_url, database_url=hostile_db)
    process = WorkerProcess(env=env, log_path=tmp_path_factory.mktemp("w") / "worker.log").start()
    yield process
    process.stop()
    process.remove_keys(redis_url, "hostile-callback-target")


@pytest.fixture(scope="module")
def seeder(hostile_db: str, hasher: Hasher) -> Iterator[Seeder]:
    seeder = Seeder(hostile_db, hasher)
    yield seeder
    seeder.engine.dispose()


def letters(client: redis.Redis, worker: WorkerProcess) -> DeadLetterBox:
    return DeadLetterBox(
        client, worker.env["ACCOUNT_RESET_DEAD_LETTERS_KEY"], maxlen=None, sealer=None
    )


def good_command_for(queue: str, accountid: str) -> tuple[str, str]:
    """A valid reset-session-key for `accountid`, and that accountid."""
    kwargs = {"accountid": accountid, "requester_accountid": accountid}
    return raw_protocol2_message("reset-session-key", kwargs, queue), accountid


def assert_still_serving(client: redis.Redis, worker: WorkerProcess, seeder: Seeder) -> None:
    """The worker is alive, and a good command sent now succeeds."""
    message, accountid = good_command_for(
        worker.env["ACCOUNT_RESET_QUEUE"], seeder.account().accountid
    )
    client.lpush(worker.env["ACCOUNT_RESET_QUEUE"], message)
    found = worker.outcomes(client, {task_id_of(message)}, timeout_s=DEADLINE_S)
    assert found[task_id_of(message)].status == "success"
    assert seeder.load(accountid).session_key_number == 2
    assert worker.process is not None
    assert worker.process.poll() is None


def wait_until_nothing_held(client: redis.Redis, queue: str) -> None:
    """Nothing reserved or unacknowledged: a command's event goes out just before its ack."""
    poll_until(
        lambda: not (client.llen(reserved_key(queue)) or client.zcard(f"{queue}:unacked_index")),
        DEADLINE_S,
        f"{queue}: nothing held",
    )


def message_with(
    queue: str,
    *,
    task: str = "reset-session-key",
    kwargs: Any = None,
    headers: dict[str, Any] | None = None,
    embed: Any = None,
) -> str:
    """A protocol-2 message with headers and embed of the test's choosing."""
    message = json.loads(raw_protocol2_message(task, kwargs or {}, queue))
    message["headers"].update(headers or {})
    if embed is not None:
        body = [[], kwargs or {}, embed]
        message["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    return json.dumps(message)


def test_50000_nested_arrays_are_dead_lettered_and_the_worker_goes_on(
    redis_client: redis.Redis, worker: WorkerProcess, seeder: Seeder
) -> None:
    """Finding 1: ~100 KB, 50,000 nested arrays: RecursionError stopped every worker."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    before = len(letters(redis_client, worker).all())
    deep = "[" * 50_000 + "]" * 50_000
    in_headers = '{"headers": ' + deep + ', "properties": {}}'
    redis_client.rpush(queue, deep, in_headers)
    assert_still_serving(redis_client, worker, seeder)
    new = letters(redis_client, worker).all()[before:]
    assert [letter.reason for letter in new] == [Reason.UNDECODABLE] * 2
    assert redis_client.llen(reserved_key(queue)) == 0


def test_an_entry_over_the_cap_is_dropped_unparsed(
    redis_client: redis.Redis, worker: WorkerProcess, seeder: Seeder
) -> None:
    """Finding 4: a 40 MB header took the main process from 100 MB to 254 MB."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    before = len(letters(redis_client, worker).all())
    huge = message_with(queue, headers={"padding": "x" * (10 * 1024 * 1024)})
    redis_client.rpush(queue, huge)
    assert_still_serving(redis_client, worker, seeder)
    new = letters(redis_client, worker).all()[before:]
    assert [letter.reason for letter in new] == [Reason.TOO_LARGE]
    assert "over the limit of 262144" in new[0].detail


def test_attached_callbacks_and_builtin_tasks_never_run(
    redis_client: redis.Redis, worker: WorkerProcess, seeder: Seeder
) -> None:
    """Finding 3: `embed.callbacks` had the worker send tasks to a queue the producer chose,
    and Celery's built-in tasks ran from the queue."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    target = "hostile-callback-target"
    callback: dict[str, Any] = {
        "task": "celery.accumulate", "args": [], "kwargs": {}, "options": {"queue": target},
        "subtask_type": None, "immutable": True,
    }  # fmt: skip
    user = seeder.account()
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid}
    attached = {
        name: message_with(
            queue, kwargs={**kwargs, "command_id": unique(name)},
            embed={"callbacks": None, "errbacks": None, "chain": None, "chord": None,
                   name: [callback] if name != "chord" else callback},
        )
        for name in ("callbacks", "errbacks", "chain", "chord")
    }  # fmt: skip
    builtins = [
        message_with(queue, task=name, kwargs={})
        for name in ("celery.accumulate", "celery.chord_unlock", "celery.backend_cleanup")
    ]
    before = len(letters(redis_client, worker).all())
    redis_client.rpush(queue, *attached.values(), *builtins)
    command_ids = {json.loads(base64.b64decode(json.loads(m)["body"]))[1]["command_id"]
                   for m in attached.values()}  # fmt: skip

    found = worker.outcomes(redis_client, command_ids, timeout_s=DEADLINE_S)

    assert {outcome.code for outcome in found.values()} == {"invalid-payload"}
    assert seeder.load(user.accountid).session_key_number == 1  # nothing applied either
    assert_still_serving(redis_client, worker, seeder)
    reasons = sorted(letter.reason for letter in letters(redis_client, worker).all()[before:])
    assert reasons == sorted([Reason.INVALID_MESSAGE] * 4 + [Reason.UNKNOWN_TASK] * 3)
    assert redis_client.llen(target) == 0


def _entry(queue: str, change: Any) -> str:
    message = json.loads(raw_protocol2_message("reset-session-key", {"accountid": "a"}, queue))
    change(message)
    return json.dumps(message)


def _bomb(message: dict[str, Any]) -> None:
    """1.5 KB of bz2 that inflates to 1 GB, in kombu's main process, before any size check."""
    message["headers"]["compression"] = "application/x-bz2"
    inflated = b"[" + b" " * 10**9 + b"[], {}, {}]"
    message["body"] = base64.b64encode(bz2.compress(inflated)).decode()


# Found by review: each stopped the worker ("Unrecoverable error") before any check ran, with
# the entry left in Redis to stop the next worker; the bomb held the queue 8 s an entry.
KOMBU_TYPES = {
    "body_encoding nope": lambda m: m["properties"].update(body_encoding="nope"),
    "body_encoding 5": lambda m: m["properties"].update(body_encoding=5),
    "delivery_tag list": lambda m: m["properties"].update(delivery_tag=[1, 2]),
    "delivery_tag object": lambda m: m["properties"].update(delivery_tag={"a": 1}),
    "delivery_tag null": lambda m: m["properties"].update(delivery_tag=None),
    "task list": lambda m: m["headers"].update(task=["reset-session-key"]),
    "task object": lambda m: m["headers"].update(task={"a": 1}),
    "content-type list": lambda m: m.update({"content-type": ["application/json"]}),
    "content-encoding 7": lambda m: m.update({"content-encoding": 7}),
    "bz2 bomb": _bomb,
    # Found by review (stop 22): kombu decodes the body before any check and stopped the worker
    # on both ("Unrecoverable error: Invalid base64-encoded string"), every worker in turn as
    # the restore sweep put the entry back: one LPUSH stopped the service.
    "body not base64": lambda m: m.update(body="DLNOB64SECRET!!"),
    "body a lone surrogate": lambda m: m.update(body="\ud800"),
}


@pytest.mark.parametrize("kind", list(KOMBU_TYPES))
def test_an_envelope_kombu_would_choke_on_is_dead_lettered(
    kind: str, redis_client: redis.Redis, worker: WorkerProcess, seeder: Seeder
) -> None:
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    before = len(letters(redis_client, worker).all())
    redis_client.rpush(queue, _entry(queue, KOMBU_TYPES[kind]))
    assert_still_serving(redis_client, worker, seeder)
    new = letters(redis_client, worker).all()[before:]
    assert [letter.reason for letter in new] == [Reason.UNDECODABLE]
    wait_until_nothing_held(redis_client, queue)


@pytest.mark.parametrize("attachment", ["callbacks", "errbacks", "chain", "chord"])
def test_attachments_in_the_headers_are_refused_too(
    attachment: str, redis_client: redis.Redis, worker: WorkerProcess, seeder: Seeder
) -> None:
    """Found by review: Celery reads callbacks and chains from the headers too; a command with
    `headers.callbacks` ran, then the worker itself pushed a task onto the producer's queue."""
    queue, target = worker.env["ACCOUNT_RESET_QUEUE"], unique("hostile-header-target")
    user = seeder.account()
    command_id = unique("attached")
    callback: dict[str, Any] = {"task": "celery.accumulate", "args": [], "kwargs": {},
                "options": {"queue": target}, "subtask_type": None, "immutable": True}  # fmt: skip
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid,
              "command_id": command_id}  # fmt: skip
    headers = {attachment: callback if attachment == "chord" else [callback]}
    redis_client.rpush(queue, message_with(queue, kwargs=kwargs, headers=headers))
    found = worker.outcomes(redis_client, {command_id}, timeout_s=DEADLINE_S)
    assert found[command_id].code == "invalid-payload"
    assert seeder.load(user.accountid).session_key_number == 1
    assert_still_serving(redis_client, worker, seeder)
    assert redis_client.exists(target, f"_kombu.binding.{target}") == 0


def test_headers_celery_does_not_define_are_dropped_not_acted_on(
    redis_client: redis.Redis, worker: WorkerProcess, seeder: Seeder
) -> None:
    """A reply queue, a hostname, a delivery_info in the headers: the command runs as sent."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    user = seeder.account()
    reply = unique("hostile-reply")
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid}
    headers = {"reply_to": reply, "hostname": "elsewhere", "is_eager": True, "trace": "abc"}
    message = message_with(queue, kwargs=kwargs, headers=headers)
    redis_client.rpush(queue, message)
    found = worker.outcomes(redis_client, {task_id_of(message)}, timeout_s=DEADLINE_S)
    assert found[task_id_of(message)].status == "success"
    assert redis_client.exists(reply) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"eta": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        {"eta": (datetime.now(UTC) + timedelta(seconds=20)).isoformat()},  # not a retry
        {"eta": "not a date"},
        {"eta": 12345},
        {"expires": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
        {"timelimit": [0.01, 0.01]},
        {"retries": 10**9},
        {"shadow": "someone-else"},
        {"group": str(uuid.uuid4())},
    ],
    ids=[
        "eta-a-day",
        "eta-20s",
        "eta-text",
        "eta-number",
        "expired",
        "timelimit",
        "retries",
        "shadow",
        "group",
    ],
)
def test_a_command_runs_when_it_arrives_and_answers_a_steering_header_at_once(
    headers: dict[str, Any], redis_client: redis.Redis, worker: WorkerProcess, seeder: Seeder
) -> None:
    """Finding 4: an `eta` a day ahead was restored and received again at every sweep (about
    65 scheduled copies per hour). Now: refused at once, under the producer's command_id."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    user = seeder.account()
    command_id = unique("steered")
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid,
              "command_id": command_id}  # fmt: skip
    redis_client.rpush(queue, message_with(queue, kwargs=kwargs, headers=headers))

    found = worker.outcomes(redis_client, {command_id}, timeout_s=DEADLINE_S)

    assert found[command_id].code == "invalid-payload"
    assert seeder.load(user.accountid).session_key_number == 1
    wait_until_nothing_held(redis_client, queue)  # nothing held back to come again


def test_a_restored_message_goes_back_to_its_queue_not_where_its_routing_key_points(
    redis_url: str, postgres_url: str, hasher: Hasher, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Found in review: kombu restored an unacknowledged message to the key its (producer-
    written) routing_key named, so a killed worker wrote a producer's message to any key."""
    seeder = Seeder(postgres_url, hasher)
    env = worker_env(
        redis_url=redis_url, database_url=postgres_url,
        ACCOUNT_RESET_WORKER_CONCURRENCY="1", ACCOUNT_RESET_PREFETCH_MULTIPLIER="2",
        ACCOUNT_RESET_VISIBILITY_TIMEOUT_S="5", ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="2",
        ACCOUNT_RESET_RESTORE_INTERVAL_S="1", ACCOUNT_RESET_DB_LOCK_TIMEOUT_S="60",
    )  # fmt: skip
    queue, victim = env["ACCOUNT_RESET_QUEUE"], unique("victim-key")
    blocked, steered = seeder.account(), seeder.account()
    first, _ = good_command_for(queue, blocked.accountid)
    hostile = json.loads(good_command_for(queue, steered.accountid)[0])
    hostile["properties"]["delivery_info"]["routing_key"] = victim
    node = WorkerProcess(env=env, log_path=tmp_path / "killed.log").start()
    holder = seeder.engine.connect()
    try:
        lock = holder.begin()
        holder.execute(
            sa.text("SELECT 1 FROM accounts WHERE accountid = :id FOR UPDATE"),
            {"id": blocked.accountid},
        )
        redis_client.rpush(queue, json.dumps(hostile), first)  # `first` is taken first
        wait_until_waiting(seeder.engine, 1)
        poll_until(
            lambda: redis_client.zcard(f"{queue}:unacked_index") >= 2,
            DEADLINE_S,
            "the steered message held, unacknowledged",
        )
        assert node.process is not None
        for pid in pool_children(node):
            os.kill(pid, signal.SIGKILL)
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=DEADLINE_S)
        node.process = None
        lock.rollback()
        node.start()
        found = node.outcomes(redis_client, {task_id_of(first), hostile["headers"]["id"]})
    finally:
        holder.close()
        node.stop()
        seeder.engine.dispose()
    assert {outcome.status for outcome in found.values()} == {"success"}
    assert redis_client.exists(victim) == 0


def test_an_oversized_body_is_answered_under_the_producers_command_id(
    redis_client: redis.Redis, worker: WorkerProcess
) -> None:
    """Finding 6: the failure event carried the task id, so a producer waited forever."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    command_id = unique("oversized")
    kwargs = {"accountid": "acct_x", "command_id": command_id, "padding": "p" * 70_000}
    redis_client.rpush(queue, raw_protocol2_message("reset-session-key", kwargs, queue))
    found = worker.outcomes(redis_client, {command_id}, timeout_s=DEADLINE_S)
    assert found[command_id].code == "invalid-payload"


def test_celery_inspect_shows_no_plaintext_secret(
    redis_url: str, postgres_url: str, hasher: Hasher, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Finding 2: `celery inspect active/reserved` showed a plaintext new-password and
    secret-code (Request.info() returned the raw arguments). The first command is held active
    behind the test's own lock on the account's row, the second waits reserved behind it."""
    seeder = Seeder(postgres_url, hasher)
    env = worker_env(
        redis_url=redis_url, database_url=postgres_url,
        ACCOUNT_RESET_WORKER_CONCURRENCY="1", ACCOUNT_RESET_PREFETCH_MULTIPLIER="2",
        ACCOUNT_RESET_DB_LOCK_TIMEOUT_S="120",
    )  # fmt: skip
    queue = env["ACCOUNT_RESET_QUEUE"]
    inspector = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    flower = start_flower(env, tmp_path / "flower.log")
    user = seeder.account()
    secrets = []
    messages = []
    for _ in range(2):
        code, password = unique(PLAIN_CODE_PREFIX), unique(PLAIN_PASSWORD_PREFIX)
        seeder.code(user, code)
        secrets += [code, password]
        kwargs = {"username": user.username, "secret-code": code, "new-password": password}
        messages.append(raw_protocol2_message("reset-account-password", kwargs, queue))
    holder = seeder.engine.connect()
    try:
        with TaskEventRecorder(redis_url) as recorder:
            recorder.wait_for(lambda e: e.get("hostname") == inspector.nodename, DEADLINE_S)
            lock = holder.begin()  # the worker's transaction now waits for this row lock
            holder.execute(
                sa.text("SELECT 1 FROM accounts WHERE accountid = :id FOR UPDATE"),
                {"id": user.accountid},
            )
            redis_client.rpush(queue, *messages)
            first = task_id_of(messages[0])
            wait_until_waiting(seeder.engine, 1)  # the first command is active, at the lock
            shown = {
                view: _inspect(env, inspector.nodename, view, *extra)
                for view, extra in {
                    "active": (), "reserved": (), "scheduled": (), "revoked": (),
                    "query_task": (first, task_id_of(messages[1])),
                }.items()
            }  # fmt: skip
            shown["Flower's worker page"] = _flower_workers(flower[1], inspector.nodename)
            lock.rollback()
            found = inspector.outcomes(redis_client, {task_id_of(m) for m in messages})
    finally:
        holder.close()
        inspector.stop()
        flower[0].terminate()
        flower[0].wait(timeout=DEADLINE_S)
        seeder.engine.dispose()
    assert {outcome.code for outcome in found.values()} == {None, "invalid-reset-code"}
    # The views were looked at while one command ran and the other waited behind it.
    assert sum(task_id_of(m) in shown["active"] for m in messages) == 1
    assert sum(task_id_of(m) in shown["reserved"] for m in messages) == 1
    assert sum(task_id_of(m) in shown["Flower's worker page"] for m in messages) == 2
    assert "[redacted]" in shown["active"]
    for view, text in shown.items():
        for secret in [*secrets, user.username]:
            assert secret not in text, f"{view} shows a secret"


def _flower_workers(flower: str, node: str) -> str:
    """Flower's worker page data (it asks the worker, as `celery inspect` does)."""

    def shows_the_worker(_status: int, body: bytes) -> bool:
        return node.encode() in body and b'"active"' in body

    url = f"{flower}/api/workers?refresh=1&workername={node}"
    return http_until(url, shows_the_worker, "Flower showing the worker", DEADLINE_S)[1].decode()


def _inspect(env: dict[str, str], node: str, view: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "inspect", view, *args,
         "-d", node, "--json", "--timeout", "10"],
        env=env, capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


# Raw queue entries, each of which must be refused: not JSON, not an envelope, or an envelope
# whose headers or body the worker must not act on.
_text = st.text(max_size=50)
_odd = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), _text,
    st.lists(st.integers(), max_size=3), st.dictionaries(_text, st.integers(), max_size=3),
)  # fmt: skip


def _envelope(headers: dict[str, Any], body: str = "W10=") -> bytes:
    return json.dumps(
        {
            "body": body, "content-encoding": "utf-8", "content-type": "application/json",
            "headers": headers,
            "properties": {"delivery_tag": str(uuid.uuid4()), "body_encoding": "base64",
                           "delivery_info": {"exchange": "", "routing_key": "x"}},
        }
    ).encode()  # fmt: skip


def _steering_headers(draw: Any) -> dict[str, Any]:
    headers: dict[str, Any] = {"task": "reset-session-key", "id": str(uuid.uuid4())}
    steering = draw(st.sampled_from(["eta", "expires", "timelimit", "retries", "shadow", "group"]))
    value = draw(_odd.filter(lambda v: v not in (None, 0, [], {}, False)))
    if steering == "eta":
        value = draw(st.one_of(_odd, st.integers(60, 10**6).map(
            lambda s: (datetime.now(UTC) + timedelta(seconds=s)).isoformat())))  # fmt: skip
    if steering == "retries":
        value = draw(st.one_of(st.integers(6, 10**12), st.integers(max_value=-1), _text))
    if steering == "timelimit":
        value = draw(st.one_of(st.lists(st.floats(0, 10), min_size=2, max_size=2), _text))
    headers[steering] = value
    return headers


@st.composite
def hostile_entries(draw: Any) -> bytes:
    kind = draw(st.sampled_from(
        ["deep", "huge", "utf8", "envelope", "headers", "task-id", "kombu-types"]
    ))  # fmt: skip
    if kind == "kombu-types":
        name = draw(st.sampled_from([k for k in KOMBU_TYPES if k != "bz2 bomb"]))
        return _entry("x", KOMBU_TYPES[name]).encode()
    if kind == "deep":
        depth = draw(st.integers(1_000, 60_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return str(opener * depth + "1" + closer * depth).encode()
    if kind == "huge":
        return _envelope({"task": "reset-session-key", "id": "x", "pad": "p" * 300_000})
    if kind == "utf8":
        return b'{"body": "\xff\xfe", "headers": {"task": "\xc3\x28"}}'
    if kind == "envelope":
        return json.dumps(draw(st.one_of(
            _odd, st.fixed_dictionaries({"properties": _odd, "body": _odd, "headers": _odd}),
        ))).encode()  # fmt: skip
    if kind == "task-id":
        return _envelope({"task": "reset-session-key", "id": draw(_odd.filter(
            lambda v: not isinstance(v, str) or not 0 < len(v) <= 200))})  # fmt: skip
    return _envelope(_steering_headers(draw))


@hypothesis_settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow],
)  # fmt: skip
@given(entries=st.lists(hostile_entries(), min_size=10, max_size=25))
def test_no_raw_entry_of_any_shape_stops_the_worker(
    entries: list[bytes], redis_client: redis.Redis, worker: WorkerProcess, seeder: Seeder
) -> None:
    """Every hostile entry is dead-lettered, nothing stays reserved or unacknowledged, the
    worker stays up, and a good command sent afterwards succeeds."""
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    box = letters(redis_client, worker)
    before = len(box.all())
    redis_client.rpush(queue, *entries)
    assert_still_serving(redis_client, worker, seeder)
    assert len(box.all()) - before == len(entries)
    assert redis_client.llen(reserved_key(queue)) == 0
    wait_until_nothing_held(redis_client, queue)
