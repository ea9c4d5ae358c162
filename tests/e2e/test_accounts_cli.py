"""Issue 16, finding 3: no documented way to create accounts or reset codes to try the worker on
one's own data. `account-reset accounts create` and `reset-codes create`, run as the real
console script on each database backend, make what a real worker then resets.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.databases import migrated_sqlite
from tests.support.ids import unique
from tests.support.probes import run_cli
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess, worker_env
from worker.security.hashing import Hasher


def test_finding_3_an_account_and_a_code_from_the_cli_reset_a_password_on_a_real_worker(
    running_worker: WorkerProcess, seeder: Seeder
) -> None:
    env = running_worker.env
    username, password, new_password = unique("user"), unique("pw")[:40], unique("new")[:40]

    created = run_cli(env, "accounts", "create", stdin=f"{username}\n{password}\n")
    accountid = created.stdout.strip()
    coded = run_cli(env, "reset-codes", "create", "--accountid", accountid)
    code = coded.stdout.strip()
    reset = run_cli(
        env, "enqueue", "reset-account-password", "--wait", "30",
        stdin=f"{username}\n{code}\n{new_password}\n",
    )  # fmt: skip

    assert accountid.startswith("acct_")
    assert len(created.stdout.splitlines()) == 1
    assert re.fullmatch("[a-z0-9]{20}", code), "20 of the dashboard's letters and digits"
    assert reset.stdout.splitlines()[-1] == "outcomes: success 1"
    account = seeder.load(accountid)
    assert seeder.hasher.password_matches(new_password, account.password_hash or "")
    assert account.session_key_number == 2
    for secret in (username, password, code):
        assert secret not in created.stderr + coded.stderr
    assert f"{username}\n" not in created.stdout
    assert "created for " + accountid in coded.stderr


def test_finding_3_a_missing_account_or_a_taken_username_is_one_line_and_exit_1(
    running_worker: WorkerProcess, seeder: Seeder
) -> None:
    env = running_worker.env
    taken = seeder.account()
    missing = unique("acct_missing")
    no_account = run_cli(env, "reset-codes", "create", "--accountid", missing, check=False)
    taken_username = run_cli(
        env, "accounts", "create", stdin=f"{taken.username}\nsome-password\n", check=False
    )

    assert (no_account.returncode, no_account.stderr, no_account.stdout) == (
        1, f"Error: no account {missing} in appid test-app\n", "",
    )  # fmt: skip
    assert (taken_username.returncode, taken_username.stderr, taken_username.stdout) == (
        1, "Error: an account with this username exists already\n", "",
    )  # fmt: skip


def test_finding_3_a_code_from_stdin_is_not_printed_and_what_would_be_refused_is_one_line(
    redis_url: str, hasher: Hasher, tmp_path: Path
) -> None:
    """The dashboard takes such a code in its own reset: tests/e2e/dashboard/."""
    database_url = migrated_sqlite(tmp_path)
    env = worker_env(redis_url=redis_url, database_url=database_url)
    account = run_cli(env, "accounts", "create", stdin="someone\nsome-password\n").stdout.strip()
    new_code = ("reset-codes", "create", "--accountid", account, "--code-from-stdin")
    chosen = run_cli(env, *new_code, stdin="chosencode1\n")
    assert chosen.stdout == ""
    assert "chosencode1" not in chosen.stderr
    seeder = Seeder(database_url, hasher)
    assert seeder.codes_of(account) == 1
    seeder.engine.dispose()

    no_tables = {**env, "ACCOUNT_RESET_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"}
    refusals = {
        "short password": run_cli(env, "accounts", "create", stdin="another\nshort\n", check=False),
        "a code not of letters and digits": run_cli(
            env, *new_code, stdin="not-a-dashboard-code\n", check=False
        ),
        "no password line": run_cli(env, "accounts", "create", stdin="another\n", check=False),
        "no tables": run_cli(
            no_tables, "accounts", "create", stdin="another\nsome-password\n", check=False
        ),
    }

    assert {name: (done.returncode, done.stderr) for name, done in refusals.items()} == {
        "short password": (
            1,
            "Error: the password must be 6 to 50 characters"
            " (ACCOUNT_RESET_MIN_PASSWORD_LENGTH, _MAX_PASSWORD_LENGTH)\n",
        ),
        "a code not of letters and digits": (
            1,
            "Error: the code must be 6 to 50 letters and digits, as the dashboard takes\n",
        ),
        "no password line": (
            1,
            "Error: standard input must hold the username and the password, one a line\n",
        ),
        "no tables": (
            1,
            "Error: no dashboard tables in this database: run `account-reset db upgrade`\n",
        ),
    }
    assert all(done.stdout == "" for done in refusals.values())


def test_a_password_read_from_stdin_is_the_whole_line_not_cut_at_a_unicode_line_break(
    running_worker: WorkerProcess, seeder: Seeder
) -> None:
    """Found by review: standard input was split with str.splitlines, which also breaks at
    U+2028, U+0085, \\x0b, \\x0c and \\x1c-\\x1e: `Secret12\\u2028tail` made an account whose
    password was `Secret12`, and such a character in a username shifted the reset code into
    the new password. Only a newline ends a line now."""
    password = "Secret12\u2028tail\x0bend\x1c!"
    created = run_cli(running_worker.env, "accounts", "create",
                      stdin=f"{unique('user')}\n{password}\n")  # fmt: skip

    account = seeder.load(created.stdout.strip())
    assert seeder.hasher.password_matches(password, account.password_hash or "")
    assert not seeder.hasher.password_matches("Secret12", account.password_hash or "")
