"""The command line's tables at the console's width: a table when its rows fit on a line each,
else a narrower form; never an identifier cut short, which an operator copies into the next
command (`failed show/retry/drop` take the dead letter's id). Every value in a cell is a
producer's text, shown as text with its controls escaped (client/terminal_text.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from client.terminal_text import untrusted

if TYPE_CHECKING:
    from worker.streams.dead_letters import DeadLetter

# Wider than any line a console shows: a table measured at this width has its natural width.
UNBOUNDED_WIDTH = 100_000
LETTER_COLUMNS = ("id", "when", "reason", "task", "command_id", "accountid", "retryable")


def print_fitting(console: Console, wide: RenderableType, narrow: RenderableType) -> None:
    """`wide` when it fits the console's width with no word cut (text wraps between words),
    else `narrow`."""
    unbounded = console.options.update_width(UNBOUNDED_WIDTH)
    fits = console.measure(wide, options=unbounded).minimum <= console.width
    console.print(wide if fits else narrow)


def print_dead_letters(console: Console, letters: Sequence[DeadLetter]) -> None:
    """A row per letter where the console is wide enough, else a block per letter."""
    rows = [_cells(letter) for letter in letters]
    table = Table(*LETTER_COLUMNS)
    for column in table.columns:
        # Identifiers stay on one line; the reason, prose, wraps between its words.
        column.no_wrap = column.header != "reason"
    for cells in rows:
        table.add_row(*cells)
    print_fitting(console, table, Group(*(_block(cells) for cells in rows)))


def _cells(letter: DeadLetter) -> tuple[Text, ...]:
    """The letter's values as text: the task, ids and detail are whatever a producer sent, which
    as a string rich would read as markup (`[/evil]` is a MarkupError), and a terminal would
    obey the control sequences of."""
    reason = f"{letter.reason.value}: {letter.detail}" + (
        f" ({letter.cause})" if letter.cause else ""
    )
    return tuple(map(untrusted, (
        letter.letter_id, letter.dead_lettered_at.isoformat(timespec="seconds"), reason,
        letter.task or None, letter.command_id or None, letter.accountid or None,
        "yes" if letter.retryable else "no",
    )))  # fmt: skip


def _block(cells: tuple[Text, ...]) -> Table:
    """One letter as name and value lines; a value too long for its line folds, whole."""
    block = Table.grid(padding=(0, 2), pad_edge=True)
    block.add_column(no_wrap=True, style="bold")
    block.add_column(overflow="fold")
    for name, value in zip(LETTER_COLUMNS, cells, strict=True):
        block.add_row(name, value)
    block.add_row("", "")
    return block
