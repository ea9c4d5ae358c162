"""Findings F3 and F4 of the security review, in-process: the helper that shows a producer's
text on a terminal as text (never markup, never a control sequence), and the reading of the
workers' answers to `inspect active_queues`, whatever shape a node gives them."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from client.terminal_text import escaped, untrusted
from worker.ops.status import live_nodes

# One of each class of control character, and how it is shown instead.
CONTROLS = {
    "\x00": "\\x00",  # C0: NUL
    "\x07": "\\x07",  # C0: BEL
    "\x08": "\\x08",  # C0: backspace
    "\t": "\\t",  # C0: tab
    "\n": "\\n",  # C0: line feed
    "\r": "\\r",  # C0: carriage return
    "\x1b": "\\x1b",  # C0: ESC, which starts every terminal control sequence
    "\x7f": "\\x7f",  # DEL
    "\x85": "\\x85",  # C1: next line
    "\x9b": "\\x9b",  # C1: CSI, ESC [ in one byte for terminals that take 8-bit controls
    "\u2028": "\\u2028",  # line separator
    "\u2029": "\\u2029",  # paragraph separator
    "\u202e": "\\u202e",  # right-to-left override: text shown in another order than it is
}


def printed(text: Text) -> str:
    """What a terminal console writes for `text`, colours and all."""
    console = Console(force_terminal=True, width=200, color_system="truecolor")
    with console.capture() as captured:
        console.print(text)
    return captured.get()


@pytest.mark.parametrize("control", CONTROLS, ids=[repr(c) for c in CONTROLS])
def test_finding_f3_each_control_character_is_shown_escaped(control: str) -> None:
    """F3: `\\x1b]0;title\\x1b\\\\` sets a terminal's title, `\\x1b[2J` clears it, a newline
    starts a line that looks like another row: each control is shown as its escape."""
    assert escaped(f"a{control}b") == f"a{CONTROLS[control]}b"
    assert untrusted(f"a{control}b").plain == f"a{CONTROLS[control]}b"


def test_finding_f3_a_terminal_sequence_reaches_the_console_escaped() -> None:
    """F3: `\\x1b]0;title\\x1b\\\\` and `\\x1b[2J` print as their escapes; the only ESC the
    console writes is its own styling."""
    shown = printed(untrusted("x\x1b]0;title\x1b\\\x1b[2Jy"))
    assert "x\\x1b]0;title\\x1b\\\\x1b[2Jy" in shown
    assert "\x1b]" not in shown
    assert "\x1b[2J" not in shown


def test_finding_f3_rich_markup_is_text_not_markup() -> None:
    """F3: `[/evil]` raised rich's MarkupError; `[link=http://evil.example]click[/link]` was a
    link. Both are shown as written."""
    for markup in ("[/evil]", "[link=http://evil.example]click[/link]", "[bold red]x[/]"):
        text = untrusted(markup)
        assert text.plain == markup
        assert not text.spans
        assert markup in printed(text)
    assert "\x1b]8;" not in printed(untrusted("[link=http://evil.example]click[/link]"))


@pytest.mark.parametrize(
    "ordinary",
    ["reset-session-key", "acct-0123", "Zoë Łukasz Ñandú", "Ωμέγα", "名前", "اسم", "emoji 🔑"],
)
def test_finding_f3_ordinary_text_is_unchanged(ordinary: str) -> None:
    """F3: letters of any script, and symbols, are shown as they are."""
    assert escaped(ordinary) == ordinary
    assert untrusted(ordinary).plain == ordinary


def test_finding_f3_a_missing_value_is_a_dash() -> None:
    assert untrusted(None).plain == "-"


QUEUES = ["q-main", "q-sessions"]


@pytest.mark.parametrize(
    "reply",
    [
        ["not-a-dict"],
        [None, 3, ["q-main"], {"no-name": "q-main"}, {"name": 7}],
        "not-a-list",
        {"name": "q-main"},
        None,
        42,
    ],
    ids=repr,
)
def test_finding_f4_a_malformed_active_queues_answer_is_skipped(reply: Any) -> None:
    """F4: a node answering `["not-a-dict"]` (or any other shape than a list of queue dicts)
    made `status` raise AttributeError. Its items of the wrong shape are skipped, and a node
    that names none of the queues, well-formed, is not counted as one of their workers; the
    well-formed nodes are still listed."""
    answers = {"evil@host": reply, "good@host": [{"name": "q-main"}, {"name": "other"}]}
    nodes = live_nodes(answers, QUEUES)
    assert [(node.name, node.queues) for node in nodes] == [("good@host", ["other", "q-main"])]


def test_finding_f4_well_formed_items_beside_malformed_ones_are_kept() -> None:
    """F4: `["not-a-dict", {"name": "q-sessions"}]` is a worker of q-sessions."""
    nodes = live_nodes({"mixed@host": ["not-a-dict", {"name": "q-sessions"}]}, QUEUES)
    assert [(node.name, node.queues) for node in nodes] == [("mixed@host", ["q-sessions"])]


@pytest.mark.parametrize("answers", [None, [], "nodes", [{"a@host": []}]], ids=repr)
def test_finding_f4_answers_that_are_not_a_mapping_are_no_node(answers: Any) -> None:
    assert live_nodes(answers, QUEUES) == []
