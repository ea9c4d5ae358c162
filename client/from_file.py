"""`enqueue --from-file`: one command a line, each sent remembered by its line number, so that a
wait that ends before every event came names each command still missing by line and command_id.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import click
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from client.events import OutcomesMissing
from client.producer import AccountResetClient
from schemas import COMMANDS, CommandOutcome
from schemas.fields import COMMAND_ID


@dataclass(frozen=True)
class Line:
    """One command of the file: where it is, what it is."""

    number: int  # in the file, counting blank lines, as an editor does
    command: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Sent:
    """A line's command as sent: under its own command_id, or a new one."""

    number: int
    command: str
    command_id: str

    def shown(self) -> str:
        shown = {"line": self.number, "command": self.command, COMMAND_ID: self.command_id}
        return json.dumps(shown)


def read_lines(source: TextIO, command: str | None) -> list[Line]:
    """Every line that is not blank, checked before anything is sent."""
    return [_line(number, text, command) for number, text in enumerate(source, start=1)
            if text.strip()]  # fmt: skip


def _line(number: int, text: str, command: str | None) -> Line:
    try:
        payload = json.loads(text)
    except ValueError:
        raise click.ClickException(f"line {number} is not JSON") from None
    if not isinstance(payload, dict):
        raise click.ClickException(f"line {number} is not a JSON object")
    name = command or payload.pop("command", None)
    if not isinstance(payload.get(COMMAND_ID, ""), str):
        raise click.ClickException(f"line {number}: command_id must be a string")
    if name not in COMMANDS:
        raise click.ClickException(f'line {number}: "command" must name one of {sorted(COMMANDS)}')
    return Line(number, name, payload)


def send_lines(client: AccountResetClient, lines: list[Line], console: Console) -> list[Sent]:
    """Send each line's command, with a progress bar; a line without a command_id gets one."""
    sent: list[Sent] = []
    with _progress(console, "enqueue", total=len(lines)) as advance:
        for line in lines:
            payload = dict(line.payload)
            given = payload.pop(COMMAND_ID, None)
            command_id = client.send(line.command, payload, command_id=given)
            sent.append(Sent(line.number, line.command, command_id))
            advance()
    return sent


def wait_for_lines(
    client: AccountResetClient, sent: list[Sent], *, timeout_s: float, console: Console
) -> dict[str, CommandOutcome]:
    """Every line's event, with a progress bar as they come. On the deadline, every line
    without one goes to standard output, one JSON object each (`line`, `command`,
    `command_id`: sending those lines again under those command_ids is safe), and the count
    to the error line."""
    ids = {s.command_id for s in sent}
    try:
        with _progress(console, "waiting for events", total=len(ids)) as advance:
            return client.wait_all(ids, timeout_s=timeout_s, on_event=lambda _event: advance())
    except PermissionError as cannot:
        raise click.ClickException(str(cannot)) from None
    except OutcomesMissing as late:
        missing = set(late.missing)
        for line in sent:
            if line.command_id in missing:
                click.echo(line.shown())
        came = f"; the others': {summary(late.found)}" if late.found else ""
        raise click.ClickException(
            f"no event after {timeout_s}s for {len(missing)} of {len(ids)} commands (each on"
            " standard output with its line and command_id: sending those lines again with"
            f" those command_ids is safe){came}"
        ) from None


def summary(found: dict[str, CommandOutcome]) -> str:
    """How many commands had each outcome: `invalid-accountid 1, success 40`."""
    outcomes = Counter(outcome.code or "success" for outcome in found.values())
    return ", ".join(f"{code} {count}" for code, count in sorted(outcomes.items()))


@contextmanager
def _progress(console: Console, description: str, *, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on `console`, and the function that moves it one step."""
    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
