"""The producer's and the audit consumer's commands: `schema`, `enqueue`, `events tail`.

They need Redis only; `account-reset` (worker/ops/cli.py) adds them to its command group.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import click
from pydantic import ValidationError

from client.bulk_cli import reset_session_keys
from client.from_file import read_lines, send_lines, summary, wait_for_lines
from client.producer import AccountResetClient
from client.settings import ClientSettings, settings_problems
from client.tail import EventFilter, tail_events
from client.terminal_text import escaped
from schemas import CommandOutcome
from schemas.json_schema import wire_contract

WAIT_HELP = "Wait up to this many seconds for the result event(s), then summarise."


@click.command()
@click.argument("part", required=False, type=click.Choice([*wire_contract()]))
def schema(part: str | None) -> None:
    """Print the wire contract as JSON Schema: both commands' kwargs and the result event."""
    contract = wire_contract()
    click.echo(json.dumps(contract[part] if part else contract, indent=2))


@click.group(invoke_without_command=True)
@click.option(
    "--from-file", "source", type=click.File(),
    help='JSON lines, each a command\'s kwargs with its name in "command".',
)  # fmt: skip
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), help=WAIT_HELP)
@click.pass_context
def enqueue(ctx: click.Context, source: TextIO | None, wait_s: float | None) -> None:
    """Send commands. Secrets come from a prompt, standard input or a file, never from arguments.

    `enqueue --from-file F.jsonl` sends one command per line (say, ending many accounts'
    sessions after an incident), with a progress bar; a line without a command_id gets a new
    one. With --wait, a summary of the outcomes follows; should the wait end first, each command
    still without an event is printed as JSON: its line, command and command_id.
    """
    try:
        ClientSettings()  # a bad key is one line here, not a traceback from the first send
    except ValidationError as error:
        raise click.ClickException(f"invalid settings: {settings_problems(error)}") from None
    if ctx.invoked_subcommand is not None:
        return
    if source is None:
        raise click.UsageError("name a command, or give --from-file")
    _send_lines(source, None, wait_s)


@enqueue.command("reset-session-key")
@click.option("--accountid", help="Required unless --from-file is given.")
@click.option("--requester-accountid", help="Default: the account itself.")
@click.option("--appid")
@click.option("--command-id", help="Idempotency key; sending it again is safe.")
@click.option("--from-file", "source", type=click.File(), help="JSON lines, kwargs each.")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), help=WAIT_HELP)
def enqueue_session_key(
    accountid: str | None, requester_accountid: str | None, appid: str | None,
    command_id: str | None, source: TextIO | None, wait_s: float | None,
) -> None:  # fmt: skip
    """End every session of an account (or of every account in --from-file)."""
    if source is not None:
        _send_lines(source, "reset-session-key", wait_s)
        return
    if accountid is None:
        raise click.UsageError("--accountid is required")
    with AccountResetClient(ClientSettings()) as client:
        sent = client.reset_session_key(
            accountid, requester_accountid=requester_accountid, appid=appid, command_id=command_id
        )
        _report(client, [sent], wait_s)


@enqueue.command("reset-account-password")
# Refused: an argument is in the process list (`ps`, /proc/<pid>/cmdline) for every local user.
@click.option("--username", "username_argument", hidden=True)
@click.option("--appid")
@click.option("--command-id", help="Idempotency key; sending it again is safe.")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), help=WAIT_HELP)
def enqueue_password(
    username_argument: str | None, appid: str | None, command_id: str | None,
    wait_s: float | None,
) -> None:  # fmt: skip
    """Set a new password with a reset code. The username, the code and the password are
    prompted for on a terminal, else read from standard input, one per line in that order;
    none is ever an argument, which any local user could read in the process list."""
    if username_argument is not None:
        raise click.UsageError(
            "--username would put the username in the process list: give it at the prompt or"
            " on the first line of standard input (then the code, then the password)"
        )
    username, code, password = _secrets()
    with AccountResetClient(ClientSettings()) as client:
        sent = client.reset_account_password(
            username=username, secret_code=code, new_password=password,
            appid=appid, command_id=command_id,
        )  # fmt: skip
        _report(client, [sent], wait_s)


enqueue.add_command(reset_session_keys)


def _send_lines(source: TextIO, command: str | None, wait_s: float | None) -> None:
    lines = read_lines(source, command)
    with AccountResetClient(ClientSettings()) as client:
        sent = send_lines(client, lines, _stderr())
        click.echo(f"enqueued {len(sent)} commands", err=True)
        if wait_s is None:
            return
        found = wait_for_lines(client, sent, timeout_s=wait_s, console=_stderr())
    _summarise(found)


@dataclass(frozen=True)
class Secret:
    """A secret a command reads: `prompt` on a terminal, `named` when standard input lacks it."""

    prompt: str
    named: str
    confirmed: bool = False  # asked twice on a terminal


def read_secrets(*wanted: Secret) -> list[str]:
    """Each secret wanted: prompted for (hidden) on a terminal, else one line of standard input
    each, in that order. Never an argument, which any local user reads in the process list."""
    if sys.stdin.isatty():
        return [
            str(click.prompt(s.prompt, hide_input=True, confirmation_prompt=s.confirmed))
            for s in wanted
        ]
    # Only a newline ends a line: str.splitlines also breaks at U+2028, \x0b, \x1c and others,
    # which cut a password short or shifted one secret into the next.
    lines = sys.stdin.read().split("\n")[: len(wanted)]
    if len(lines) < len(wanted) or not all(lines):
        *first, last = [s.named for s in wanted]
        listed = f"{', '.join(first)} and {last}, one a line" if first else f"{last}, on a line"
        raise click.ClickException(f"standard input must hold {listed}")
    return lines


def _secrets() -> tuple[str, str, str]:
    """The username, the reset code and the new password."""
    username, code, password = read_secrets(
        Secret("Username", "the username"),
        Secret("Reset code", "the reset code"),
        Secret("New password", "the password", confirmed=True),
    )
    return username, code, password


def _report(client: AccountResetClient, sent: list[str], wait_s: float | None) -> None:
    for command_id in sent if len(sent) == 1 else []:
        click.echo(command_id)
    if wait_s is None:
        return
    try:
        found = client.wait_all(sent, timeout_s=wait_s)
    except (TimeoutError, PermissionError) as cannot:
        raise click.ClickException(str(cannot)) from None
    _summarise(found)


def _summarise(found: dict[str, CommandOutcome]) -> None:
    """The outcomes' counts; exit status 1 unless every command succeeded."""
    click.echo(f"outcomes: {summary(found)}")
    if any(outcome.code for outcome in found.values()):
        raise SystemExit(1)


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@click.group()
def events() -> None:
    """Read the result events."""


@events.command("tail")
@click.option("--group", help="Read as this Redis consumer group (acknowledges what it handled).")
@click.option("--consumer", help="This reader's name in the group.")
@click.option("--status", type=click.Choice(["success", "failure"]))
@click.option("--code", help="Only events with this exception code.")
@click.option("--accountid", help="Only events about this account.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@click.option("--from-start", is_flag=True, help="Begin at the oldest event kept, not new ones.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after printing this many.")
@click.option(
    "--idle-timeout", type=click.FloatRange(min=0), help="Stop after this long with no event."
)
@click.option(
    "--claim-idle", default=60.0, show_default=True, type=click.FloatRange(min=0),
    help="Take over entries another consumer left pending this many seconds.",
)  # fmt: skip
def events_tail(
    group: str | None, consumer: str | None, status: str | None, code: str | None,
    accountid: str | None, as_json: bool, from_start: bool, count: int | None,
    idle_timeout: float | None, claim_idle: float,
) -> None:  # fmt: skip
    """Follow the result stream; with --group, as a consumer group member (XREADGROUP, XACK,
    XAUTOCLAIM of entries a dead consumer left pending)."""
    if (group is None) != (consumer is None):
        raise click.UsageError("--group and --consumer go together")
    wanted = EventFilter(status=status, code=code, accountid=accountid)
    if not as_json:
        click.echo(_row("occurred_at", "status", "code", "command", "accountid", "command_id"))
    try:
        printed = tail_events(
            ClientSettings(),
            wanted,
            lambda event: click.echo(event.model_dump_json() if as_json else _event_row(event)),
            group=group,
            consumer=consumer,
            from_start=from_start,
            count=count,
            idle_timeout_s=idle_timeout,
            claim_idle_s=claim_idle,
        )
    except PermissionError as cannot:
        raise click.ClickException(str(cannot)) from None
    click.echo(f"{printed} events", err=True)


def _event_row(event: CommandOutcome) -> str:
    """One line: a producer's ids shown escaped, never as terminal sequences or a second line."""
    return _row(*map(escaped, (
        event.occurred_at.isoformat(timespec="seconds"), event.status.value,
        event.code.value if event.code else "-", event.command, event.accountid or "-",
        event.command_id,
    )))  # fmt: skip


def _row(*cells: str) -> str:
    widths = (25, 7, 23, 22, 22)
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False)) + (
        "  " + cells[-1] if len(cells) > len(widths) else ""
    )
