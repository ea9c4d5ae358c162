"""The `account-reset` console script, run as a real process: `db upgrade`, and a worker that
refuses to start (the worker running: tests/e2e/test_cli_worker.py)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import databases
from tests.support.ids import unique
from tests.support.probes import CLI
from tests.support.workers import clean_env
from worker.db.engine import create_db_engine
from worker.dev.processes import free_port

DEADLINE_S = 60.0


@pytest.mark.parametrize("fresh_database_url", databases.BACKENDS, indirect=True)
def test_db_upgrade_creates_the_tables(fresh_database_url: str) -> None:
    subprocess.run(
        [CLI, "db", "upgrade"],
        env=clean_env(ACCOUNT_RESET_DATABASE_URL=fresh_database_url),
        check=True, capture_output=True, timeout=DEADLINE_S,
    )  # fmt: skip
    engine = create_db_engine(fresh_database_url)
    assert "account_reset_outcomes" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_production_without_a_hash_key_refuses_to_start_and_says_why() -> None:
    result = subprocess.run(
        [CLI, "worker"],
        env=clean_env(
            ACCOUNT_RESET_ENVIRONMENT="production",
            ACCOUNT_RESET_BROKER_URL="redis://:broker-password@127.0.0.1:1/0",
        ),
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert result.returncode != 0
    assert "ACCOUNT_RESET_HASH_KEY must be set outside development" in result.stderr
    assert "broker-password" not in result.stderr + result.stdout


@pytest.mark.parametrize("flag", ["--version", "-h", "--help"])
def test_version_and_help_need_no_settings(flag: str) -> None:
    """Issue 16, finding 13: `--version` and `-h` as Celery's tools have them, answered even
    where the worker's settings would be refused (production without a hash key)."""
    result = subprocess.run(
        [CLI, flag],
        env=clean_env(ACCOUNT_RESET_ENVIRONMENT="production"),
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    expected = "account-reset, version 0." if flag == "--version" else "Usage: account-reset"
    assert result.stdout.startswith(expected)


def test_subcommands_take_h_for_help() -> None:
    result = subprocess.run(
        [CLI, "db", "upgrade", "-h"], env=clean_env(), capture_output=True, text=True,
        timeout=DEADLINE_S,
    )  # fmt: skip
    assert (result.returncode, result.stdout.split()[:2]) == (0, ["Usage:", "account-reset"])


@pytest.mark.parametrize("fresh_database_url", databases.BACKENDS, indirect=True)
def test_db_current_and_downgrade(fresh_database_url: str) -> None:
    """Issue 16, finding 13: `db current` and `db downgrade` beside `db upgrade`; a revision
    that does not exist is one line, not a traceback."""

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, "db", *args],
            env=clean_env(ACCOUNT_RESET_DATABASE_URL=fresh_database_url),
            capture_output=True, text=True, timeout=DEADLINE_S,
        )  # fmt: skip

    assert db("current").stdout.startswith("no revision (run `account-reset db upgrade`")
    assert db("upgrade").returncode == 0
    assert db("current").stdout == "0003 (latest)\n"
    assert db("downgrade", "0002").returncode == 0
    assert db("current").stdout == "0002 (latest: 0003)\n"
    engine = create_db_engine(fresh_database_url)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("account_reset_outcomes")}
    engine.dispose()
    assert "fingerprint" not in columns  # 0003 really went down
    unknown = db("downgrade", "0999")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("Error: ")
    assert len(unknown.stderr.splitlines()) == 1


UNREACHABLE = [
    (["enqueue", "reset-session-key", "--accountid", "acct_1"], "cannot reach Redis: "),
    (["events", "tail", "--count", "1"], "cannot reach Redis: "),
    (["failed", "list"], "cannot reach Redis: "),
    (["db", "current"], "cannot use the database: connection refused"),
    (["db", "upgrade", "--wait-seconds", "0.5"], "cannot use the database: connection refused"),
]


@pytest.mark.parametrize(
    ("args", "said"), UNREACHABLE, ids=[" ".join(a[:2]) for a, _ in UNREACHABLE]
)
def test_a_server_out_of_reach_is_one_line(args: list[str], said: str) -> None:
    """Issue 16, finding 4: Redis down was a 135-line traceback from `enqueue`, 73 from `events
    tail`, 67 from `failed list`; a database out of reach after `db upgrade`'s wait, 128."""
    nothing_there = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [CLI, *args],
        env=clean_env(
            ACCOUNT_RESET_ENVIRONMENT="development",
            ACCOUNT_RESET_BROKER_URL=f"redis://{nothing_there}/0",
            ACCOUNT_RESET_HASH_KEY="a-hash-key-for-the-cli-test",
            ACCOUNT_RESET_DATABASE_URL=f"postgresql://nobody:db-password@{nothing_there}/x",
        ),
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if not line.startswith("waiting for")]
    assert result.returncode == 1
    assert errors == [errors[0]]
    assert errors[0].startswith(f"Error: {said}")
    assert "db-password" not in result.stderr


BAD_SETTINGS = [
    ({"ACCOUNT_RESET_BCRYPT_ROUNDS": "abc"}, ["db", "current"], "ACCOUNT_RESET_BCRYPT_ROUNDS: "),
    ({"ACCOUNT_RESET_DATABASE_URL": "foo://x"}, ["db", "current"], "ACCOUNT_RESET_DATABASE_URL "),
    ({"ACCOUNT_RESET_DATABASE_URL": "http://db/x"}, ["failed", "list"],
     "ACCOUNT_RESET_DATABASE_URL "),
    ({"ACCOUNT_RESET_BROKER_URL": "http://redis"}, ["enqueue", "reset-session-key",
     "--accountid", "a"], "ACCOUNT_RESET_BROKER_URL "),
]  # fmt: skip


@pytest.mark.parametrize(
    ("variables", "args", "named"), BAD_SETTINGS, ids=[next(iter(v)) for v, _, _ in BAD_SETTINGS]
)
def test_a_bad_setting_is_one_line_that_names_its_variable(
    variables: dict[str, str], args: list[str], named: str
) -> None:
    """Issue 16, finding 4: `ACCOUNT_RESET_BCRYPT_ROUNDS=abc` was reported without the
    variable's name, and a `foo://` or `http://` database URL was a traceback."""
    result = subprocess.run(
        [CLI, *args],
        env=clean_env(
            ACCOUNT_RESET_ENVIRONMENT="development",
            ACCOUNT_RESET_HASH_KEY="a-hash-key-for-the-cli-test",
            **variables,
        ),
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if not line.startswith("no ACCOUNT")]
    assert errors == [errors[0]], result.stderr
    assert errors[0].startswith(f"Error: invalid settings: {named}")
    assert "Traceback" not in result.stderr


A_PASSWORD = "Ab3/passwordpart"  # base64 passwords hold a "/"
UNREADABLE_URLS = [
    ({"ACCOUNT_RESET_BROKER_URL": f"redis://:{A_PASSWORD}@127.0.0.1:6379/0"}, ["status"],
     "ACCOUNT_RESET_BROKER_URL "),
    ({"ACCOUNT_RESET_BROKER_URL": f"redis://:{A_PASSWORD}@127.0.0.1:6379/0"},
     ["enqueue", "reset-session-key", "--accountid", "a"], "ACCOUNT_RESET_BROKER_URL "),
    ({"ACCOUNT_RESET_BROKER_URL": f"redis://:{A_PASSWORD}@127.0.0.1:6379/0"},
     ["events", "tail", "--count", "1"], "ACCOUNT_RESET_BROKER_URL "),
    ({"ACCOUNT_RESET_BROKER_URL": f"redis://:{A_PASSWORD}@127.0.0.1:6379/0"},
     ["failed", "list"], "ACCOUNT_RESET_BROKER_URL "),
    ({"ACCOUNT_RESET_CACHE_URL": f"redis://:{A_PASSWORD}@127.0.0.1:6379/0"},
     ["failed", "list"], "ACCOUNT_RESET_CACHE_URL "),
    ({"ACCOUNT_RESET_BROKER_URL": f"sentinel://:{A_PASSWORD}@127.0.0.1:26379/0",
      "ACCOUNT_RESET_SENTINEL_MASTER": "m"}, ["status"], "ACCOUNT_RESET_BROKER_URL: "),
    ({"ACCOUNT_RESET_BROKER_URL": "redis://127.0.0.1:6379/0?socket_timeout=passwordpart"},
     ["status"], "ACCOUNT_RESET_BROKER_URL "),
    ({"ACCOUNT_RESET_DATABASE_URL": "postgresql://u:p@127.0.0.1:passwordpart/x"},
     ["db", "current"], "ACCOUNT_RESET_DATABASE_URL "),
    ({"ACCOUNT_RESET_DATABASE_URL": "sqlite://passwordpart@host/x"}, ["accounts", "create"],
     "ACCOUNT_RESET_DATABASE_URL: "),
]  # fmt: skip


@pytest.mark.parametrize(
    ("variables", "args", "named"), UNREADABLE_URLS,
    ids=[f"{next(iter(v))} {' '.join(a[:2])}" for v, a, _ in UNREADABLE_URLS],
)  # fmt: skip
def test_a_url_no_parser_reads_is_one_line_without_the_password(
    variables: dict[str, str], args: list[str], named: str
) -> None:
    """Found by review: a password holding "/" (as base64 passwords do) made `status`,
    `enqueue`, `events tail`, `failed list` and the worker print a traceback ending "Port could
    not be cast to integer value as 'Ab3'", the password's first part; a SQLite URL with a user
    was a traceback quoting the whole URL."""
    result = subprocess.run(
        [CLI, *args],
        env=clean_env(
            ACCOUNT_RESET_ENVIRONMENT="development",
            ACCOUNT_RESET_HASH_KEY="a-hash-key-for-the-cli-test",
            **variables,
        ),
        input="user\npassword-of-the-account\n", capture_output=True, text=True,
        timeout=DEADLINE_S,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("no ACCOUNT")]
    assert errors == [errors[0]], result.stderr
    assert errors[0].startswith(f"Error: invalid settings: {named}"), result.stderr
    assert "Ab3" not in result.stderr + result.stdout
    assert "passwordpart" not in result.stderr + result.stdout


def test_an_error_no_command_expects_is_one_line_with_its_type_and_not_its_text(
    redis_url: str, tmp_path: Path
) -> None:
    """Found by review: any error the commands did not expect was a traceback, whose text may
    quote a URL or a secret (a file of commands that is not UTF-8 gave a UnicodeDecodeError
    traceback). It is one line naming its type; ACCOUNT_RESET_DEBUG=1 shows the traceback."""
    commands = tmp_path / "commands.jsonl"
    commands.write_bytes(b'{"accountid": "acct_\xff"}\n')
    args = [CLI, "enqueue", "reset-session-key", "--from-file", str(commands)]
    env = clean_env(ACCOUNT_RESET_BROKER_URL=redis_url, ACCOUNT_RESET_QUEUE=unique("unread"))

    said = subprocess.run(args, env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    debugged = subprocess.run(
        args, env={**env, "ACCOUNT_RESET_DEBUG": "1"}, capture_output=True, text=True,
        timeout=DEADLINE_S,
    )  # fmt: skip

    assert (said.returncode, said.stderr) == (1, (
        "Error: unexpected UnicodeDecodeError (its text withheld, as it may quote a secret;"
        " ACCOUNT_RESET_DEBUG=1 shows the traceback)\n"
    ))  # fmt: skip
    assert debugged.returncode == 1
    assert "Traceback" in debugged.stderr


def test_a_redis_that_never_answers_ends_enqueue_in_one_line_not_a_wait_forever() -> None:
    """Found by review: against a Redis that accepts the connection and never answers,
    `enqueue reset-session-key` waited until it was killed (40 s in the review, 120 s here):
    the producer's broker connection had no socket timeout. It ends after 10 s, in one line."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; no one answers
        port = silent.getsockname()[1]
        result = subprocess.run(
            [CLI, "enqueue", "reset-session-key", "--accountid", "acct_1"],
            env=clean_env(ACCOUNT_RESET_BROKER_URL=f"redis://127.0.0.1:{port}/0"),
            capture_output=True, text=True, timeout=DEADLINE_S,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot reach Redis: Timeout")
    assert len(result.stderr.splitlines()) == 1
