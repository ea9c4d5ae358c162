"""`account-reset`: run the worker, migrate the database, run the demo."""

from __future__ import annotations

import os
import sys

import click
from pydantic import ValidationError
from rich.console import Console

from worker.settings import get_settings

DEMO_WIDTH = 190


@click.group()
def main() -> None:
    """account-reset-worker: applies account-security commands from a Redis queue."""
    try:
        get_settings()
    except ValidationError as error:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        raise click.ClickException(f"invalid settings: {problems}") from None


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Start a worker; any further options go to `celery worker` (e.g. --concurrency=4)."""
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
        f"--queues={settings.queue}",
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
    """Create or update the worker's tables (leaves the dashboard's tables as they are)."""
    from worker.database import wait_for_database
    from worker.migrate import upgrade as run_upgrade

    url = get_settings().database_url
    wait_for_database(url, timeout_s=wait_seconds, on_wait=lambda line: click.echo(line, err=True))
    run_upgrade(url)
    click.echo("database is at the latest revision", err=True)


@main.command()
def demo() -> None:
    """Every seed scenario through an embedded Redis, a real worker and SQLite."""
    from worker.demo import run_demo

    run_demo(Console(width=max(Console().width, DEMO_WIDTH)))


if __name__ == "__main__":
    sys.exit(main())
