"""`account-reset`: run the worker, migrate the database, handle dead letters, run the demo."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from client import cli as client_cli
from worker.settings import get_settings

if TYPE_CHECKING:
    from worker.dead_letters import DeadLetter, DeadLetterBox

DEMO_WIDTH = 190


@click.group()
def main() -> None:
    """account-reset-worker: applies account-security commands from a Redis queue."""
    try:
        get_settings()
    except ValidationError as error:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        raise click.ClickException(f"invalid settings: {problems}") from None


main.add_command(client_cli.schema)
main.add_command(client_cli.enqueue)
main.add_command(client_cli.events)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--sessions",
    is_flag=True,
    help="Consume ACCOUNT_RESET_SESSIONS_QUEUE only, and only reset-session-key.",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(sessions: bool, celery_args: tuple[str, ...]) -> None:
    """Start a worker; any further options go to `celery worker` (e.g. --concurrency=4)."""
    if sessions:
        # Before the settings are first read, here and in every pool process.
        os.environ["ACCOUNT_RESET_NODE_ROLE"] = "sessions"
        get_settings.cache_clear()
    from worker.bootstrap import broker_url
    from worker.celery_app import app

    settings = get_settings()
    url = broker_url(settings)
    if settings.broker_url is None:
        click.echo(f"No ACCOUNT_RESET_BROKER_URL: embedded Redis listening at {url}", err=True)
        # Producers on this machine find the embedded broker under the usual variable.
        os.environ["ACCOUNT_RESET_BROKER_URL"] = url
    argv = [
        "worker",
        f"--queues={settings.consumed_queue}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
        *celery_args,
    ]
    app.worker_main(argv)


@main.group()
def db() -> None:
    """The database schema (Alembic migrations)."""


@db.command()
@click.option(
    "--wait-seconds", default=60.0, show_default=True, help="How long to wait for the database."
)
def upgrade(wait_seconds: float) -> None:
    """Create the worker's table, and the dashboard's where they are missing (as it would)."""
    from worker.database import wait_for_database
    from worker.migrate import upgrade as run_upgrade

    settings = get_settings()
    url = settings.database_url
    wait_for_database(url, timeout_s=wait_seconds, on_wait=lambda line: click.echo(line, err=True))
    run_upgrade(url, appid=settings.appid)
    click.echo("database is at the latest revision", err=True)


@main.group()
def failed() -> None:
    """Dead letters: commands the worker gave up on. List, show, retry or drop them."""


@failed.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show the oldest N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def failed_list(limit: int | None, as_json: bool) -> None:
    """Every dead letter, oldest first (identifiers and reasons only, never a secret)."""
    letters = _dead_letters().all(limit=limit)
    if as_json:
        for letter in letters:
            click.echo(json.dumps(letter.shown()))
        return
    table = Table("id", "when", "reason", "task", "command_id", "accountid", "retryable")
    for letter in letters:
        table.add_row(
            letter.letter_id,
            letter.dead_lettered_at.isoformat(timespec="seconds"),
            f"{letter.reason.value}: {letter.detail}",
            letter.task or "-",
            letter.command_id or "-",
            letter.accountid or "-",
            "yes" if letter.retryable else "no",
        )
    Console().print(table)
    click.echo(f"{len(letters)} dead letter(s)", err=True)


@failed.command("show")
@click.argument("letter_id")
def failed_show(letter_id: str) -> None:
    """One dead letter, as JSON."""
    letter = _dead_letters().get(letter_id)
    if letter is None:
        raise click.ClickException(f"no dead letter {letter_id}")
    click.echo(json.dumps(letter.shown(), indent=2))


@failed.command("retry")
@click.argument("letter_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every retryable dead letter.")
def failed_retry(letter_ids: tuple[str, ...], retry_all: bool) -> None:
    """Send dead letters back to the queue, with their command_id: a repeat is only a replay."""
    from schemas.display import redacted_kwargs
    from worker.celery_app import app
    from worker.dead_letters import NotRetryable
    from worker.sealing import SealError

    box = _dead_letters()
    letters = _chosen(box, letter_ids, everything=retry_all)
    refused = 0
    for letter in letters:
        try:
            payload = box.payload(letter)
        except (NotRetryable, SealError) as why:
            refused += 1
            click.echo(f"{letter.letter_id}: not retried, {why}", err=True)
            continue
        app.send_task(
            str(letter.task),
            kwargs=payload,
            queue=get_settings().queue,
            argsrepr="()",
            kwargsrepr=redacted_kwargs(payload),
        )
        box.drop(letter.letter_id)
        click.echo(f"{letter.letter_id}: retried as command_id {letter.command_id}")
    if refused and not retry_all:
        raise SystemExit(1)


@failed.command("drop")
@click.argument("letter_ids", nargs=-1)
@click.option("--all", "drop_all", is_flag=True, help="Drop every dead letter.")
@click.confirmation_option("--yes", prompt="Drop these dead letters for good?")
def failed_drop(letter_ids: tuple[str, ...], drop_all: bool) -> None:
    """Delete dead letters (their commands are not run)."""
    box = _dead_letters()
    for letter in _chosen(box, letter_ids, everything=drop_all):
        box.drop(letter.letter_id)
        click.echo(f"{letter.letter_id}: dropped")


def _dead_letters() -> DeadLetterBox:
    from worker.bootstrap import dead_letter_box

    return dead_letter_box(get_settings())


def _chosen(
    box: DeadLetterBox, letter_ids: tuple[str, ...], *, everything: bool
) -> list[DeadLetter]:
    if everything == bool(letter_ids):
        raise click.UsageError("name dead letter ids, or give --all")
    if everything:
        return box.all()
    letters = [box.get(letter_id) for letter_id in letter_ids]
    missing = [i for i, letter in zip(letter_ids, letters, strict=True) if letter is None]
    if missing:
        raise click.ClickException(f"no dead letter {', '.join(missing)}")
    return [letter for letter in letters if letter is not None]


@main.command()
def health() -> None:
    """Exit 0 only if this machine's worker consumed recently (a container liveness probe)."""
    import time

    from worker.health_step import last_consuming_at

    settings = get_settings()
    noted = last_consuming_at(settings.health_file)
    if noted is None:
        click.echo(f"unhealthy: no note in {settings.health_file}", err=True)
        raise SystemExit(1)
    age = time.time() - noted
    if age > settings.health_max_age_s:
        click.echo(f"unhealthy: last consumed {age:.0f} s ago", err=True)
        raise SystemExit(1)
    click.echo(f"healthy: consuming ({age:.1f} s ago)")


@main.command("redis-acl")
@click.option("--prefix", default="account-reset", show_default=True, help="User name prefix.")
def redis_acl(prefix: str) -> None:
    """Print ACL SETUSER lines for the producer, worker and auditor users.

    Add a password to each (`>secret`) and run them with redis-cli, or put them in an ACL file.
    """
    from worker.redis_acl import setuser_lines

    for line in setuser_lines(get_settings(), prefix):
        click.echo(line)


@main.command()
@click.option(
    "--database-url",
    default=None,
    help="Run on this database (a dashboard's: demo accounts are added) instead of a new SQLite"
    " file. Hashes follow ACCOUNT_RESET_HASH_MODE / _HASH_KEY, the appid ACCOUNT_RESET_APPID.",
)
def demo(database_url: str | None) -> None:
    """Every seed scenario through an embedded Redis, a real worker and SQLite."""
    from worker.demo import run_demo

    run_demo(Console(width=max(Console().width, DEMO_WIDTH)), database_url=database_url)


if __name__ == "__main__":
    sys.exit(main())
