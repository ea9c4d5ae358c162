"""`accounts create` and `reset-codes create`: rows made as the dashboard's own API makes them
(its hashes, its owner rule, its code format), to try the worker on one's own database.

The rows are made by worker/dev/seeding.py, as the demo's and the tests' are. Secrets come from
a prompt or standard input (client/cli.py `read_secrets`), never from an argument; a new reset
code is the one secret printed, once, because the user asked for it.
"""

from __future__ import annotations

import re
import secrets
import string
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from client.cli import Secret, read_secrets

if TYPE_CHECKING:
    import sqlalchemy as sa

    from worker.settings import Settings

# What the dashboard's create-reset-code takes: letters and digits, 6 to 50 of them (its
# MINIMUM_ and MAXIMUM_RESET_CODE_LENGTH defaults).
CODE_PATTERN = re.compile(r"[a-z0-9]{6,50}", re.IGNORECASE)
CODE_ALPHABET = string.ascii_lowercase + string.digits
# 20 of 36 symbols: 103 bits, beyond guessing within any attempt limit.
GENERATED_CODE_LENGTH = 20


class Refused(click.ClickException):
    """Nothing was written; one line says why (never the secret)."""


@click.group()
def accounts() -> None:
    """Dashboard accounts, made as the dashboard makes them, to try the worker on."""


@accounts.command("create")
def accounts_create() -> None:
    """Create an account in ACCOUNT_RESET_DATABASE_URL, in the appid ACCOUNT_RESET_APPID, and
    print its accountid. The username and the password are prompted for on a terminal, else
    read from standard input, one a line; the first account of an appid is its owner and
    administrator, as with the dashboard's sign-up."""
    username, password = read_secrets(
        Secret("Username", "the username"),
        Secret("Password", "the password", confirmed=True),
    )
    settings = _settings()
    _check_lengths(settings, username=username, password=password)
    accountid, owner = add_account(settings, username=username, password=password)
    if owner:
        click.echo(f"the first account of appid {settings.appid}: its owner", err=True)
    click.echo(accountid)


@click.group("reset-codes")
def reset_codes() -> None:
    """Reset codes for dashboard accounts, hashed as the dashboard hashes them."""


@reset_codes.command("create")
@click.option("--accountid", required=True, help="The account the code resets.")
@click.option(
    "--code-from-stdin",
    is_flag=True,
    help="Take the code (letters and digits, 6 to 50) from standard input or a prompt,"
    " instead of generating one.",
)
def reset_codes_create(accountid: str, code_from_stdin: bool) -> None:
    """Create a reset code for an account of ACCOUNT_RESET_APPID. A generated code (20 letters
    and digits) is printed once, on standard output, and kept nowhere but as its hash: hand it
    to `enqueue reset-account-password`. With --code-from-stdin nothing is printed there."""
    if code_from_stdin:
        (code,) = read_secrets(Secret("Reset code", "the reset code", confirmed=True))
        if CODE_PATTERN.fullmatch(code) is None:
            raise Refused("the code must be 6 to 50 letters and digits, as the dashboard takes")
    else:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(GENERATED_CODE_LENGTH))
    settings = _settings()
    codeid = add_reset_code(settings, accountid=accountid, code=code)
    click.echo(f"reset code {codeid} created for {accountid}", err=True)
    if not code_from_stdin:
        click.echo(code)


def add_account(settings: Settings, *, username: str, password: str) -> tuple[str, bool]:
    """The new account's accountid, and whether it is its appid's first (so its owner)."""
    import sqlalchemy as sa

    from worker.bootstrap import hasher
    from worker.db.engine import session_factory
    from worker.db.models import Account
    from worker.dev.seeding import create_account

    engine = _engine_with_tables(settings)
    try:
        with session_factory(engine).begin() as session:
            in_appid = sa.select(Account.accountid).where(Account.appid == settings.appid)
            first = session.scalar(in_appid.limit(1)) is None
            account = create_account(
                session, hasher(settings), appid=settings.appid,
                username=username, password=password, owner=first,
            )  # fmt: skip
    except sa.exc.IntegrityError:
        # usernameHash is unique over the whole table, as the dashboard declares it.
        raise Refused("an account with this username exists already") from None
    finally:
        engine.dispose()
    return account.accountid, first


def add_reset_code(settings: Settings, *, accountid: str, code: str) -> str:
    """The new code's codeid; the account's resetCodeLastCreatedAt is set, as the dashboard
    does."""
    import sqlalchemy as sa

    from worker.bootstrap import hasher
    from worker.db.engine import session_factory
    from worker.db.models import Account
    from worker.dev.seeding import SeededAccount, create_reset_code

    engine = _engine_with_tables(settings)
    try:
        with session_factory(engine).begin() as session:
            account = session.scalar(
                sa.select(Account).where(
                    Account.accountid == accountid, Account.appid == settings.appid
                )
            )
            if account is None:
                raise Refused(f"no account {accountid} in appid {settings.appid}")
            now = datetime.now(UTC)
            account.reset_code_last_created_at = now
            # The username is not known (only its hash), and not needed to make a code.
            holder = SeededAccount(accountid=accountid, appid=settings.appid, username="")
            return create_reset_code(session, hasher(settings), holder, code=code, created_at=now)
    finally:
        engine.dispose()


def _check_lengths(settings: Settings, *, username: str, password: str) -> None:
    """What the worker's commands would refuse, refused here (its limits, the dashboard's)."""
    from schemas.commands import is_usable_text, js_length

    limits = settings.limits
    if not is_usable_text(username, limits) or js_length(username) < limits.min_username_length:
        raise Refused(
            f"the username must be {limits.min_username_length} to {limits.max_field_length}"
            " characters of text (ACCOUNT_RESET_MIN_USERNAME_LENGTH)"
        )
    if not (
        is_usable_text(password, limits)
        and limits.min_password_length <= js_length(password) <= limits.max_password_length
    ):
        raise Refused(
            f"the password must be {limits.min_password_length} to {limits.max_password_length}"
            " characters (ACCOUNT_RESET_MIN_PASSWORD_LENGTH, _MAX_PASSWORD_LENGTH)"
        )


def _engine_with_tables(settings: Settings) -> sa.Engine:
    import sqlalchemy as sa

    from worker.db.engine import create_db_engine

    engine = create_db_engine(settings.database_url)
    tables = sa.inspect(engine).get_table_names()
    if not {"accounts", "resetCodes"} <= set(tables):
        engine.dispose()
        raise Refused("no dashboard tables in this database: run `account-reset db upgrade`")
    return engine


def _settings() -> Settings:
    from worker import bootstrap

    return bootstrap.settings()
