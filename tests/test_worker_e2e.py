"""End to end: a producer that knows only Celery, a real worker process, Redis, a database."""

from __future__ import annotations

import json
import subprocess
import sys

import redis

from tests.conftest import Seeder
from tests.support import WorkerProcess, unique
from worker.demo import Scenario, scenarios, seed_people
from worker.events import wait_for_outcomes

OUTCOME_DEADLINE_S = 60.0

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


def send_with_plain_celery(worker: WorkerProcess, commands: list[dict[str, object]]) -> None:
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
    found = wait_for_outcomes(
        redis_client,
        running_worker.env["ACCOUNT_RESET_EVENTS_STREAM"],
        {cid for _, cid in plan},
        timeout_s=OUTCOME_DEADLINE_S,
    )

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
    found = wait_for_outcomes(
        redis_client,
        running_worker.env["ACCOUNT_RESET_EVENTS_STREAM"],
        {result.id},
        timeout_s=OUTCOME_DEADLINE_S,
    )
    assert found[result.id].status == "success"
    assert found[result.id].accountid == user.accountid
    assert found[result.id].appid == "test-app"


def test_worker_log_holds_no_secret(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = seeder.account()
    code = seeder.code(user, unique("distinctive-code"))
    password = unique("distinctive-password")[:40]
    command_id = unique("cmd")
    send_with_plain_celery(
        running_worker,
        [{"task": "reset-account-password", "kwargs": {
            "username": user.username, "new-password": password, "secret-code": code,
            "command_id": command_id,
        }}],
    )  # fmt: skip
    wait_for_outcomes(
        redis_client,
        running_worker.env["ACCOUNT_RESET_EVENTS_STREAM"],
        {command_id},
        timeout_s=OUTCOME_DEADLINE_S,
    )
    account = seeder.load(user.accountid)
    log = running_worker.log()
    assert command_id in log  # the log is the worker's, at DEBUG, and covers this command
    for secret in (password, code, user.username, account.session_key, account.password_hash):
        assert secret
        assert secret not in log
