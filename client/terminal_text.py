"""A producer's text on an operator's terminal: shown as written, never obeyed.

Task names, command ids, accountids, consumer groups' and worker nodes' names come from whoever
may send a message or write to Redis. Printed raw, `\\x1b]0;...` sets the terminal's title,
`\\x1b[2J` clears it, a newline forges a row; given to rich as a string, `[/evil]` is a
MarkupError and `[link=...]` a link. Here each is rich `Text` (never parsed as markup) with its
control characters written as escapes. It lives in client/ (a client-only install has
`events tail`), and the worker's commands import it from there.
"""

from __future__ import annotations

import re

from rich.text import Text

MISSING = "-"
# C0, DEL and C1 controls; the line and paragraph separators, which some terminals and most
# editors break lines at; and the bidirectional overrides, which show text in another order
# than it is (an id could look like another).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escaped(value: str) -> str:
    """`value` with each control character written as Python writes it in a string literal
    (`\\x1b`, `\\n`, `\\u2028`), every other character as it is."""
    return _CONTROLS.sub(lambda control: repr(control.group())[1:-1], value)


def untrusted(value: str | None) -> Text:
    """`value` as rich text to print: escaped, never markup or emoji codes; None as a dash."""
    return Text(MISSING if value is None else escaped(value))
