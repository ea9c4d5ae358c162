"""What `account-reset failed list` prints at a terminal's width and through a pipe, run as
the real console script against a real Redis."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import redis

from tests.support.ids import unique
from tests.support.probes import CLI
from tests.support.workers import worker_env
from worker.streams.dead_letters import DeadLetterBox, Reason, sealed_letter

DEADLINE_S = 60.0
LETTERS = 3
# The letters a test put: the env that names their key; each letter's id, command_id, accountid.
Letters = tuple[dict[str, str], list[tuple[str, str, str]]]


@pytest.fixture
def letters(redis_url: str, redis_client: redis.Redis) -> Iterator[Letters]:
    """A dead letters key of this test's own, holding LETTERS letters."""
    env = worker_env(redis_url=redis_url, database_url="sqlite://")
    box = DeadLetterBox(redis_client, env["ACCOUNT_RESET_DEAD_LETTERS_KEY"], None, None)
    shown: list[tuple[str, str, str]] = []
    for _ in range(LETTERS):
        command_id, accountid = unique("a-command-id-of-some-length"), unique("acct")
        letter = sealed_letter(
            reason=Reason.RETRIES_EXHAUSTED, detail="OperationalError",
            cause="database is read-only", task="reset-session-key", task_id=command_id,
            kwargs={"accountid": accountid, "command_id": command_id}, sealer=None,
        )  # fmt: skip
        shown.append((box.put(letter), command_id, accountid))
    yield env, shown
    redis_client.delete(box.key)


def failed_list(env: dict[str, str], **columns: str) -> list[str]:
    """`failed list`'s standard output through a pipe (no terminal on any stream), its lines."""
    listed = subprocess.run(
        [CLI, "failed", "list"], env={**env, **columns}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, check=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert f"{LETTERS} dead letter(s)" in listed.stderr
    return listed.stdout.splitlines()


@pytest.mark.parametrize("columns", [{"COLUMNS": "80"}, {}], ids=["COLUMNS=80", "piped"])
def test_failed_list_never_cuts_an_id_at_80_columns(
    letters: Letters, columns: dict[str, str]
) -> None:
    """Finding 7 (issue 16): `failed list` cut the ID column (`17954573…`) at 80 columns or
    when piped, and that id is what `show`, `retry` and `drop` take. Too narrow for a row a
    letter, each letter is a block of lines: every identifier whole on its own line."""
    env, shown = letters
    lines = failed_list(env, **columns)
    print("\n" + "\n".join(lines))
    assert max(len(line) for line in lines) <= 80
    assert not any("…" in line for line in lines)
    for letter_id, command_id, accountid in shown:
        assert any(line.split() == ["id", letter_id] for line in lines)
        assert any(line.split() == ["command_id", command_id] for line in lines)
        assert any(line.split() == ["accountid", accountid] for line in lines)


def test_failed_list_is_a_row_a_letter_where_it_fits(letters: Letters) -> None:
    """Wide enough (250 columns), the table: each letter's identifiers on its one row."""
    env, shown = letters
    lines = failed_list(env, COLUMNS="250")
    for letter_id, command_id, accountid in shown:
        [row] = [line for line in lines if letter_id in line]
        assert command_id in row
        assert accountid in row
