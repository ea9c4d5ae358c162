"""`account-reset enqueue reset-session-keys`: end the sessions of many accounts, with progress."""

from __future__ import annotations

from typing import Any, TextIO

import click
from rich.console import Console
from rich.progress import Progress

from client.bulk import BulkProgress, BulkRun
from client.producer import AccountResetClient
from client.settings import ClientSettings


@click.command("reset-session-keys")
@click.option(
    "--from-file", "source", type=click.File(),
    help="The accounts, one accountid a line (`-`: standard input).",
)  # fmt: skip
@click.option("--every-account", is_flag=True, help="Every account of the appid instead.")
@click.option("--appid", help="Default: the worker's ACCOUNT_RESET_APPID.")
@click.option("--bulk-id", help="The run's id (idempotency key; sending it again is safe).")
@click.option("--requested-by", help="Who asked (an operator, an incident), in every event.")
@click.option(
    "--wait", "wait_s", type=click.FloatRange(min=0),
    help="Follow the run's events up to this many seconds, with a progress bar.",
)  # fmt: skip
def reset_session_keys(
    source: TextIO | None, every_account: bool, appid: str | None, bulk_id: str | None,
    requested_by: str | None, wait_s: float | None,
) -> None:  # fmt: skip
    """End every session of many accounts: those of --from-file, or --every-account of the
    appid (say, after an incident). Each message of the run is one transaction, and its result
    event names the accounts it reset; the run's id is printed first."""
    if every_account == (source is not None):
        raise click.UsageError("give --from-file, or --every-account")
    console = Console(stderr=True)
    with AccountResetClient(ClientSettings()) as client:
        run = _send(client, source, appid, bulk_id, requested_by, console)
        click.echo(run.bulk_id)
        if wait_s is None:
            return
        try:
            progress = _follow(client, run, wait_s, console)
        except (TimeoutError, PermissionError) as cannot:
            raise click.ClickException(str(cannot)) from None
    click.echo(
        f"{progress.reset} accounts reset, {len(progress.not_reset)} not (no such account in"
        f" the appid, or deleted), {len(progress.failures)} messages refused"
    )
    for refused in progress.failures:
        click.echo(f"{refused.command_id}: {refused.code}", err=True)
    if progress.failures:
        raise SystemExit(1)


def _send(
    client: AccountResetClient, source: TextIO | None, appid: str | None, bulk_id: str | None,
    requested_by: str | None, console: Console,
) -> BulkRun:  # fmt: skip
    if source is None:
        return client.reset_session_keys(
            every_account=True, appid=appid, bulk_id=bulk_id, requested_by=requested_by
        )
    accountids = [line.strip() for line in source if line.strip()]
    with Progress(console=console) as bar:
        task = bar.add_task("enqueue", total=len(accountids))
        return client.reset_session_keys(
            accountids, appid=appid, bulk_id=bulk_id, requested_by=requested_by,
            on_sent=lambda count: bar.advance(task, count),
        )  # fmt: skip


def _follow(
    client: AccountResetClient, run: BulkRun, wait_s: float, console: Console
) -> BulkProgress:
    with Progress(console=console) as bar:
        task = bar.add_task("reset", total=run.listed)

        def shown(progress: BulkProgress) -> Any:
            done = progress.reset + len(progress.not_reset)
            bar.update(task, completed=done, total=run.listed if run.listed else None)

        return client.follow_bulk(run, timeout_s=wait_s, on_progress=shown)
