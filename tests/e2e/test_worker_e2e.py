"""End to end: a producer that knows only Celery, a real worker process, Redis, a database."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from client.events import stream_outcomes
from client.raw_message import raw_protocol2_message, task_id_of
from schemas import CommandOutcome
from tests.support.celery_events import TaskEventRecorder
from tests.support.ids import unique
from tests.support.messages import own_sessions_reset
from tests.support.seeding import Seeder
from tests.support.streams import follow_stream
from tests.support.workers import WorkerProcess, wait_until_acknowledged, worker_env
from worker.dev.demo import Scenario, scenarios, seed_people

OUTCOME_DEADLINE_S = 60.0
# The task events that end a delivery, as Flower and `celery events` read them.
FINAL_TASK_EVENTS = ("task-succeeded", "task-failed")

# A producer in its own interpreter that imports Celery and nothing of this project: it sends
# each command by name, as JSON, and reports which of the project's packages it had loaded.
PLAIN_CELERY_PRODUCER = """
import json, sys
from celery import Celery

broker, queue = sys.argv[1], sys.argv[2]
app = Celery(broker=broker)
app.conf.task_serializer = "json"
for line in sys.stdin:
    command = json.loads(line)
    app.send_task(command["task"], kwargs=command["kwargs"], queue=queue)
print(json.dumps(sorted(m for m in ("worker", "tasks", "schemas") if m in sys.modules)))
"""


def send_with_plain_celery(worker: WorkerProcess, commands: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(command) + "\n" for command in commands)
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_CELERY_PRODUCER,
         worker.env["ACCOUNT_RESET_BROKER_URL"], worker.env["ACCOUNT_RESET_QUEUE"]],
        input=lines, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(result.stdout) == [], "the producer must not import this project"


def test_every_seed_scenario_through_a_real_worker(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    with seeder.sessions.begin() as session:
        people = seed_people(session, seeder.hasher, appid="test-app", suffix=unique("e2e"))
    plan: list[tuple[Scenario, str]] = [(s, unique("cmd")) for s in scenarios(people)]

    send_with_plain_celery(
        running_worker,
        [{"task": s.task, "kwargs": {**s.kwargs, "command_id": cid}} for s, cid in plan],
    )
    found = running_worker.outcomes(redis_client, {cid for _, cid in plan})

    seen = {s.title + " " + s.task: (found[cid].code or "success") for s, cid in plan}
    assert seen == {s.title + " " + s.task: s.expect for s, _ in plan}
    alice = seeder.load(people.alice.accountid)
    assert alice.session_key_number == 3  # one session reset, one password reset
    assert seeder.hasher.password_matches("alice-new-pw", alice.password_hash or "")
    assert seeder.codes_of(people.bob.accountid) == 1


def test_command_id_defaults_to_the_task_id(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    from celery import Celery

    user = seeder.account()
    producer = Celery(broker=running_worker.env["ACCOUNT_RESET_BROKER_URL"])
    result = producer.send_task(
        "reset-session-key",
        kwargs={"accountid": user.accountid, "requester_accountid": user.accountid},
        queue=running_worker.env["ACCOUNT_RESET_QUEUE"],
    )
    found = running_worker.outcomes(redis_client, {result.id})
    assert found[result.id].status == "success"
    assert found[result.id].accountid == user.accountid
    assert found[result.id].appid == "test-app"


@pytest.mark.parametrize("producer", ["celery", "raw"])
def test_worker_log_holds_no_secret(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis, producer: str
) -> None:
    """At DEBUG; the raw producer's short headers put the kwargs early in Celery's log lines."""
    user = seeder.account()
    code = seeder.code(user, unique("distinctive-code"))
    password = unique("distinctive-password")[:40]
    command_id = unique("cmd")
    kwargs = {"username": user.username, "new-password": password, "secret-code": code}
    kwargs["command_id"] = command_id
    if producer == "celery":
        send_with_plain_celery(
            running_worker, [{"task": "reset-account-password", "kwargs": kwargs}]
        )
    else:
        queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
        redis_client.lpush(queue, raw_protocol2_message("reset-account-password", kwargs, queue))
    assert running_worker.outcomes(redis_client, {command_id})[command_id].status == "success"
    account = seeder.load(user.accountid)
    log = running_worker.log()
    assert command_id in log  # the log is the worker's, at DEBUG, and covers this command
    for secret in (password, code, user.username, account.session_key, account.password_hash):
        assert secret
        assert secret not in log


def test_a_raw_protocol2_message_pushed_with_plain_redis_gets_its_event(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = seeder.account()
    command_id = unique("raw")
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid}
    message = raw_protocol2_message(
        "reset-session-key", {**kwargs, "command_id": command_id}, queue
    )

    redis_client.lpush(queue, message)

    found = running_worker.outcomes(redis_client, {command_id})
    assert found[command_id].status == "success"
    assert seeder.load(user.accountid).session_key_number == 2


def test_a_pickled_message_is_refused_and_never_runs(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    from celery import Celery

    user = seeder.account()
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid}
    producer = Celery(broker=running_worker.env["ACCOUNT_RESET_BROKER_URL"])
    producer.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    pickled = producer.send_task("reset-session-key", kwargs=kwargs, queue=queue)
    after = producer.send_task("reset-session-key", kwargs=kwargs, queue=queue, serializer="json")

    found = running_worker.outcomes(redis_client, {after.id, pickled.id})
    assert found[after.id].status == "success"
    # The pickled one is answered, never run: only the JSON command moved the key number.
    assert found[pickled.id].code == "invalid-payload"
    refusal = "Refused a message (ContentDisallowed: Refusing to deserialize untrusted content"
    assert refusal in running_worker.log()
    assert seeder.load(user.accountid).session_key_number == 2


def test_concurrent_commands_on_one_account_all_apply(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = seeder.account()
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid}
    commands: list[dict[str, Any]] = [
        {"task": "reset-session-key", "kwargs": {**kwargs, "command_id": unique("c")}}
        for _ in range(20)
    ]

    send_with_plain_celery(running_worker, commands)

    found = running_worker.outcomes(redis_client, {c["kwargs"]["command_id"] for c in commands})
    assert {outcome.status for outcome in found.values()} == {"success"}
    assert seeder.load(user.accountid).session_key_number == 21


def test_a_database_that_stays_down_ends_in_an_internal_error_event(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Retried with backoff, then internal-error; no retry shows a secret in a task event."""
    env = worker_env(
        redis_url=redis_url,
        database_url="postgresql://postgres@127.0.0.1:1/none",
        ACCOUNT_RESET_MAX_RETRIES="2",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="1",
    )
    secrets = {"username": unique("secret-user"), "new-password": unique("secret-password")[:40],
               "secret-code": unique("secret-code")}  # fmt: skip
    queue = env["ACCOUNT_RESET_QUEUE"]
    message = raw_protocol2_message("reset-account-password", secrets, queue)
    task_id = json.loads(message)["headers"]["id"]
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    try:
        with TaskEventRecorder(redis_url) as recorder:
            recorder.wait_for(
                lambda e: e.get("hostname") == worker.nodename, timeout_s=OUTCOME_DEADLINE_S
            )
            redis_client.lpush(queue, message)
            found = worker.outcomes(redis_client, {task_id})
            recorder.wait_for(
                lambda e: e.get("uuid") == task_id and e["type"] == "task-failed",
                timeout_s=OUTCOME_DEADLINE_S,
            )
        assert found[task_id].code == "internal-error"
        assert len(re.findall(r"transient fault \w+, retrying", worker.log())) == 2
        ours = [e for e in recorder.events if e.get("uuid") == task_id]
        assert [e["type"] for e in ours].count("task-sent") == 2  # the two retries
        shown = json.dumps(ours) + worker.log()
        for secret in secrets.values():
            assert secret not in shown
    finally:
        worker.stop()
        redis_client.delete(queue, env["ACCOUNT_RESET_EVENTS_STREAM"])


def test_task_events_show_identifiers_but_no_secret(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """What Flower and `celery events` display, from a producer that sends no kwargsrepr."""
    user = seeder.account()
    code = seeder.code(user, unique("distinctive-code"))
    password = unique("distinctive-password")[:40]
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    kwargs = {"username": user.username, "new-password": password, "secret-code": code}
    message = raw_protocol2_message("reset-account-password", kwargs, queue)
    task_id = json.loads(message)["headers"]["id"]

    with TaskEventRecorder(running_worker.env["ACCOUNT_RESET_BROKER_URL"]) as recorder:
        recorder.wait_for(
            lambda e: e.get("hostname") == running_worker.nodename, timeout_s=OUTCOME_DEADLINE_S
        )
        redis_client.lpush(queue, message)
        running_worker.outcomes(redis_client, {task_id})
        recorder.wait_for(
            lambda e: e.get("uuid") == task_id and e["type"] == "task-succeeded",
            timeout_s=OUTCOME_DEADLINE_S,
        )
    ours = [e for e in recorder.events if e.get("uuid") == task_id]
    received = next(e for e in ours if e["type"] == "task-received")

    assert "'username': '[redacted]'" in received["kwargs"]
    assert "'new-password': '[redacted]'" in received["kwargs"]
    shown = json.dumps(ours)
    for secret in (password, code, user.username):
        assert secret not in shown


def ends(task_id: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a Celery event is the one that ends this task's delivery."""
    return lambda e: e.get("uuid") == task_id and e["type"] in FINAL_TASK_EVENTS


def test_a_refused_command_is_task_failed_with_its_code_and_nothing_else_changes(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Finding 6 (issue 16): a refused command (`invalid-reset-code`) was `task-succeeded` with
    the result 'failure' and no code, so Flower and `celery events` showed it green. It is
    `task-failed` now, its exception the code alone, no traceback; its one result event, its
    acknowledgement and the dead letters are as before; an applied command is `task-succeeded`."""
    user = seeder.account()
    seeder.code(user)
    wrong_code = unique("wrong-code")
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    kwargs = {"username": user.username, "secret-code": wrong_code,
              "new-password": unique("password")[:40]}  # fmt: skip
    refused_message = raw_protocol2_message("reset-account-password", kwargs, queue)
    applied_message = own_sessions_reset(user.accountid, queue)
    refused, applied = task_id_of(refused_message), task_id_of(applied_message)

    with TaskEventRecorder(running_worker.env["ACCOUNT_RESET_BROKER_URL"]) as recorder:
        recorder.wait_for(
            lambda e: e.get("hostname") == running_worker.nodename, timeout_s=OUTCOME_DEADLINE_S
        )
        redis_client.lpush(queue, refused_message, applied_message)
        found = running_worker.outcomes(redis_client, {refused, applied})
        for task_id in (refused, applied):
            recorder.wait_for(ends(task_id), timeout_s=OUTCOME_DEADLINE_S)
    wait_until_acknowledged(redis_client, queue, OUTCOME_DEADLINE_S)
    final = {e["uuid"]: e for e in recorder.events if e.get("type") in FINAL_TASK_EVENTS}

    assert (final[refused]["type"], final[refused]["exception"]) == (
        "task-failed", "CommandRefused('invalid-reset-code')",
    )  # fmt: skip
    assert final[refused]["traceback"] == ""
    assert final[applied]["type"] == "task-succeeded"
    assert (found[refused].code, found[applied].status) == ("invalid-reset-code", "success")
    # The task's failure handler published nothing more (before Celery sent task-failed).
    stream = running_worker.env["ACCOUNT_RESET_EVENTS_STREAM"]
    assert [o.command_id for o in stream_outcomes(redis_client, stream)].count(refused) == 1
    letters = redis_client.xrange(running_worker.env["ACCOUNT_RESET_DEAD_LETTERS_KEY"])
    assert refused not in str(letters)  # other tests' poison messages may be there
    shown = json.dumps([e for e in recorder.events if e.get("uuid") == refused])
    for secret in (wrong_code, user.username, kwargs["new-password"]):
        assert secret not in shown
    running_worker.wait_for_log(rf"\[{refused}\] raised expected: CommandRefused", 10)


def test_a_failure_after_the_commit_keeps_the_success_and_the_relay_keeps_the_books(
    redis_url: str, database_url: str, seeder: Seeder, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The dashboard cache is out of reach: the command is applied and its success goes out at
    once; the outcome stays unmarked, so the relay tries the cache again and republishes it
    (same event_id) until the cache answers. Never internal-error, never a lost cache removal."""
    env = worker_env(
        redis_url=redis_url,
        database_url=database_url,
        ACCOUNT_RESET_CACHE_URL="redis://127.0.0.1:1/0",
        ACCOUNT_RESET_RELAY_INTERVAL_S="0.5",
        ACCOUNT_RESET_RELAY_GRACE_S="1",
    )
    user = seeder.account()
    queue, stream = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"]
    kwargs = {"accountid": user.accountid, "requester_accountid": user.accountid}
    message = raw_protocol2_message("reset-session-key", kwargs, queue)
    task_id = json.loads(message)["headers"]["id"]
    worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
    try:
        redis_client.lpush(queue, message)
        entries = follow_stream(
            redis_client, stream, lambda got: len(got) >= 2, timeout_s=OUTCOME_DEADLINE_S
        )
        events = [CommandOutcome.model_validate_json(e[b"event"]) for e in entries]
        # The task's event, then the relay's: one recorded success.
        assert {(e.command_id, e.status, e.event_id) for e in events} == {
            (task_id, "success", events[0].event_id)
        }
        assert seeder.load(user.accountid).session_key_number == 2
        assert "the dashboard's cache or metrics unreachable" in worker.log()
    finally:
        worker.stop()
        redis_client.delete(queue, stream)


def test_refused_messages_are_logged_without_their_body(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """An unknown task name and a body that is not JSON: refused, logged without secrets."""
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    secret = unique("distinctive-password")
    unknown = raw_protocol2_message("reset-pasword", {"new-password": secret}, queue)
    not_json = json.loads(raw_protocol2_message("reset-account-password", {}, queue))
    not_json["body"] = base64.b64encode(f"{{not json: {secret}".encode()).decode()
    user = seeder.account()
    command_id = unique("after")
    good = raw_protocol2_message(
        "reset-session-key",
        {
            "accountid": user.accountid,
            "requester_accountid": user.accountid,
            "command_id": command_id,
        },
        queue,
    )

    for message in (unknown, json.dumps(not_json), good):
        redis_client.lpush(queue, message)

    # Messages are taken in order: once the good one has its event, both were refused.
    assert running_worker.outcomes(redis_client, {command_id})[command_id].status == "success"
    log = running_worker.log()
    assert "Refused a message (KeyError: 'reset-pasword')" in log
    assert "Refused a message (DecodeError" in log
    assert secret not in log
