"""Findings F3 and F4 of the security review, through the real `account-reset` console script
against a real Redis: a producer's text (a task name, a command_id, an accountid, a consumer
group's name) is shown as text, never as rich markup and never as a terminal control sequence;
a key of the wrong type is a figure `status` cannot read, not a traceback."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
import redis

from schemas import CommandOutcome
from schemas.events import EVENT_FIELD, OutcomeStatus
from tests.support.ids import unique
from tests.support.probes import CLI
from tests.support.workers import clean_env, session_keys_of, worker_env
from worker.streams.dead_letters import DeadLetterBox, Reason, sealed_letter

DEADLINE_S = 60.0
# A producer's values: rich markup that closed a tag never opened (MarkupError), a link, a
# terminal title set, a screen cleared, a line of its own.
EVIL_TASK = "[/evil]"
EVIL_ACCOUNTID = "acct\x1b[2J[link=http://evil.example]click[/link]"
EVIL_COMMAND_ID = "cmd\x1b]0;pwned\x1b\\\nFAKE ROW"
EVIL_GROUP = "audit\x1b[2J[/evil]\x1b]0;pwned\x07"
# How each is shown instead.
SHOWN_ACCOUNTID = "acct\\x1b[2J[link=http://evil.example]click[/link]"
SHOWN_COMMAND_ID = "cmd\\x1b]0;pwned\\x1b\\\\nFAKE ROW"
SHOWN_GROUP = "audit\\x1b[2J[/evil]\\x1b]0;pwned\\x07"
# A terminal's width (a table a letter), a pipe's (a block a letter), a terminal forced.
OUTPUTS = [{"COLUMNS": "250"}, {}, {"COLUMNS": "250", "FORCE_COLOR": "1"}]
OUTPUT_IDS = ["COLUMNS=250", "piped", "FORCE_COLOR"]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=DEADLINE_S,
    )  # fmt: skip


def assert_no_producer_sequence(output: str) -> None:
    """No control sequence of the producer's: only the SGR styling a forced terminal adds."""
    assert "\x1b[2J" not in output
    assert "\x1b]" not in output  # OSC: a title, a hyperlink
    assert "\x07" not in output
    assert "Traceback" not in output


@pytest.fixture
def evil_letter(redis_url: str, redis_client: redis.Redis) -> Iterator[tuple[dict[str, str], str]]:
    """A dead letter, as the worker keeps one for an unknown task, with a producer's values."""
    env = worker_env(redis_url=redis_url, database_url="sqlite://")
    box = DeadLetterBox(redis_client, env["ACCOUNT_RESET_DEAD_LETTERS_KEY"], None, None)
    letter = sealed_letter(
        reason=Reason.UNKNOWN_TASK, detail="no such task", task=EVIL_TASK,
        task_id=EVIL_COMMAND_ID, kwargs={"accountid": EVIL_ACCOUNTID}, sealer=None,
    )  # fmt: skip
    letter_id = box.put(letter)
    yield env, letter_id
    redis_client.delete(box.key)


@pytest.mark.parametrize("output", OUTPUTS, ids=OUTPUT_IDS)
def test_finding_f3_a_dead_letter_named_with_rich_markup_is_listed_not_a_markup_error(
    evil_letter: tuple[dict[str, str], str], output: dict[str, str]
) -> None:
    """F3: task `[/evil]` made `failed list` a MarkupError traceback; accountid
    `[link=http://evil.example]click[/link]` a link; `\\x1b[2J` cleared the screen and
    `\\x1b]0;pwned\\x1b\\\\` set its title. Each is listed as written, controls escaped."""
    env, letter_id = evil_letter
    listed = run({**env, **output}, "failed", "list")
    assert listed.returncode == 0, listed.stderr
    assert "1 dead letter(s)" in listed.stderr
    assert_no_producer_sequence(listed.stdout)
    if "FORCE_COLOR" not in output:
        assert "\x1b" not in listed.stdout
    # Whole, on one line each where a letter is a row.
    text = listed.stdout
    assert letter_id in text
    assert EVIL_TASK in text
    assert SHOWN_ACCOUNTID in text or "COLUMNS" not in output
    assert "\\x1b]0;pwned\\x1b\\\\nFAKE" in text.replace("\n", "").replace(" ", "")


def test_finding_f3_failed_show_and_list_json_escape_every_control(
    evil_letter: tuple[dict[str, str], str],
) -> None:
    """F3: `failed show` and `failed list --json` are JSON, whose strings escape controls:
    the values read back are the producer's, unchanged."""
    env, letter_id = evil_letter
    shown = run(env, "failed", "show", letter_id)
    listed = run(env, "failed", "list", "--json")
    assert shown.returncode == 0, shown.stderr
    assert listed.returncode == 0, listed.stderr
    for output in (shown.stdout, listed.stdout):
        assert "\x1b" not in output
        letter = json.loads(output)
        assert (letter["task"], letter["accountid"]) == (EVIL_TASK, EVIL_ACCOUNTID)
        assert letter["command_id"] == EVIL_COMMAND_ID


@pytest.fixture
def status_env(redis_url: str) -> Iterator[dict[str, str]]:
    """A producer's settings naming keys of this test's own, removed afterwards."""
    name = unique("terminal-escapes")
    env = clean_env(
        ACCOUNT_RESET_BROKER_URL=redis_url,
        ACCOUNT_RESET_QUEUE=name,
        ACCOUNT_RESET_EVENTS_STREAM=f"{name}:events",
        ACCOUNT_RESET_DEAD_LETTERS_KEY=f"{name}:dead-letters",
    )
    yield env
    client = redis.Redis.from_url(redis_url)
    client.delete(*session_keys_of(env))
    client.close()


def test_finding_f3_status_shows_a_consumer_group_named_with_controls_escaped(
    status_env: dict[str, str], redis_client: redis.Redis
) -> None:
    """F3: any client that may XGROUP CREATE names a group; `status` printed its name raw."""
    redis_client.xgroup_create(status_env["ACCOUNT_RESET_EVENTS_STREAM"], EVIL_GROUP, mkstream=True)
    table = run({**status_env, "COLUMNS": "250"}, "status", "--timeout", "0.5")
    assert table.returncode == 0, table.stderr
    assert_no_producer_sequence(table.stdout)
    assert "\x1b" not in table.stdout
    assert SHOWN_GROUP in table.stdout


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_finding_f4_status_with_keys_of_the_wrong_type_says_so_in_a_line(
    status_env: dict[str, str], redis_client: redis.Redis, as_json: bool
) -> None:
    """F4: QUEUE a string, DEAD_LETTERS_KEY a list, EVENTS_STREAM a hash made `status` a
    WRONGTYPE traceback. Their figures are unavailable, each with a line saying why; the
    figures of the keys of the right type are still read."""
    queue = status_env["ACCOUNT_RESET_QUEUE"]
    letters = status_env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]
    stream = status_env["ACCOUNT_RESET_EVENTS_STREAM"]
    redis_client.set(queue, "a string")
    redis_client.rpush(letters, "a list")
    redis_client.hset(stream, "a", "hash")
    answer = run(status_env, "status", "--timeout", "0.5", *(["--json"] if as_json else []))
    assert answer.returncode == 0, answer.stderr
    assert "Traceback" not in answer.stderr
    notes = [
        f"{queue} is a string, not a list",
        f"{letters} is a list, not a stream",
        f"{stream} is a hash, not a stream",
    ]
    if not as_json:
        for note in notes:
            assert note in answer.stdout
        return
    figures = json.loads(answer.stdout)
    assert figures["queues"][0]["depth"] is None
    assert figures["queues"][0]["reserved"] == 0
    assert figures["dead_letters"]["count"] is None
    assert figures["events"]["length"] is None
    assert figures["no_permission"] == []
    assert sorted(set(figures["unavailable"].values())) == sorted(notes)


# `events tail` writes its rows in client/cli.py (`_event_row`), outside this change's files:
# strict, so that the change there (each cell through `escaped`) makes this marker fail, to go.
def test_finding_f3_events_tail_shows_a_producers_text_escaped(
    status_env: dict[str, str], redis_client: redis.Redis
) -> None:
    """F3: an event's command, accountid and command_id are whatever a producer sent (or any
    client that may XADD to the stream wrote); `events tail` printed them raw."""
    event = CommandOutcome(
        command_id=EVIL_COMMAND_ID, command=EVIL_TASK + "\x1b[2J",
        status=OutcomeStatus.SUCCESS, accountid=EVIL_ACCOUNTID,
    )  # fmt: skip
    redis_client.xadd(
        status_env["ACCOUNT_RESET_EVENTS_STREAM"], {EVENT_FIELD: event.model_dump_json()}
    )
    args = ("events", "tail", "--from-start", "--count", "1", "--idle-timeout", "2")
    tailed = run(status_env, *args)
    as_json = run(status_env, *args, "--json")
    assert tailed.returncode == 0, tailed.stderr
    assert_no_producer_sequence(tailed.stdout)
    assert "\x1b" not in tailed.stdout
    assert SHOWN_ACCOUNTID in tailed.stdout
    assert SHOWN_COMMAND_ID in tailed.stdout
    assert len(tailed.stdout.splitlines()) == 2  # the header and the event's one line
    assert json.loads(as_json.stdout) == json.loads(event.model_dump_json())
