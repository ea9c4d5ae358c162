"""The rules of the two commands, in the dashboard's order of checks; and the table of them.

A handler runs inside the caller's transaction: it reads, checks, and changes rows, and returns
the affected accountid. A rule failure raises `CommandRejected`; the caller rolls back.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, cast

from schemas import ExceptionCode, ResetAccountPassword, ResetSessionKey, ResetSessionKeys
from schemas.codes import CommandRejected
from schemas.events import BulkChunk
from tasks.deps import RuleDeps
from tasks.ports import AccountRows, AttemptCounter, C, CommandModel, Handler
from worker.db.models import Account

SESSION_KEY_BYTES = 32


def reset_session_key(
    command: ResetSessionKey,
    uow: AccountRows,
    deps: RuleDeps[AttemptCounter],  # noqa: ARG001 (every handler takes the same arguments)
) -> str:
    """An account ends all its own sessions.

    Its own live account (nearly every command) is changed at once, in one statement (on
    PostgreSQL: one round trip, where reading then writing took two); anything else is looked up
    only to name the refusal, and the caller's rollback undoes nothing."""
    if command.requester_accountid == command.accountid:
        key = {command.accountid: secrets.token_hex(SESSION_KEY_BYTES)}
        if uow.end_sessions_of(key, appid=command.appid, now=datetime.now(UTC)):
            return command.accountid
    account = uow.account_by_id(command.accountid, command.appid)
    if account is None:
        raise CommandRejected(ExceptionCode.INVALID_ACCOUNTID)
    raise CommandRejected(ExceptionCode.INVALID_ACCOUNT, accountid=account.accountid)


def reset_account_password(
    command: ResetAccountPassword, uow: AccountRows, deps: RuleDeps[AttemptCounter]
) -> str:
    """The holder of a reset code sets a new password; every session ends, every code is used."""
    username_hash = deps.hasher.lookup_hash(command.username.get_secret_value())
    account = uow.account_by_username_hash(username_hash, command.appid)
    if account is None:
        raise CommandRejected(ExceptionCode.INVALID_USERNAME)
    if account.deleted_at is not None:
        raise CommandRejected(ExceptionCode.INVALID_ACCOUNT, accountid=account.accountid)
    # Counted once per delivery (a retry gets the same decision), per account, source and appid,
    # under the appid as the account row holds it: MariaDB's collation finds this account under
    # `TEST-APP` or `test-app ` too, and each spelling must not bring counts of its own.
    reservation = deps.attempts.reserve(
        appid=account.appid or command.appid,
        accountid=account.accountid,
        command_id=command.command_id,
        secret_code=command.secret_code.get_secret_value(),
        source=command.source,
    )
    if reservation.refused_by is not None:
        # Guessing stopped: the code is not even looked at until the window passes.
        raise CommandRejected(ExceptionCode.TOO_MANY_ATTEMPTS, accountid=account.accountid)
    now = datetime.now(UTC)
    code = uow.reset_code(
        secret_code_hash=deps.hasher.lookup_hash(command.secret_code.get_secret_value()),
        # The dashboard looked codes up without the account: anyone's code reset anyone's
        # password. A code counts only for the account it belongs to.
        accountid=account.accountid,
        appid=command.appid,
        created_after=None if deps.code_ttl is None else now - deps.code_ttl,
    )
    if code is None:
        raise CommandRejected(ExceptionCode.INVALID_RESET_CODE, accountid=account.accountid)
    # Only once the reset is committed: a failed commit leaves the count as it stands.
    uow.after_commit(lambda: deps.attempts.succeeded(reservation))

    # bcrypt last: every cheap check has passed by now.
    account.password_hash = deps.hasher.password_hash(command.new_password.get_secret_value())
    account.password_last_changed_at = now
    account.reset_code_last_used_at = now
    _end_sessions(account, now)
    uow.delete_reset_codes(accountid=account.accountid, appid=command.appid)
    return account.accountid


def reset_session_keys(
    command: ResetSessionKeys, uow: AccountRows, deps: RuleDeps[AttemptCounter]
) -> BulkChunk:
    """Many accounts end all their sessions, in one transaction: the listed ones, or the next
    chunk of the appid's accounts after the run's last. There is no requester to check: the
    command is an operator's (who may enqueue at all is the broker's ACL and signing)."""
    now = datetime.now(UTC)
    if command.every_account:
        listed = uow.live_accountids(
            appid=command.appid, after=command.after, limit=deps.bulk_chunk
        )
    else:
        listed = command.accountids or []
    keys = {accountid: secrets.token_hex(SESSION_KEY_BYTES) for accountid in listed}
    reset = uow.end_sessions_of(keys, appid=command.appid, now=now)
    kept = set(reset)
    return BulkChunk(
        bulk_id=command.run_id,
        chunk=command.chunk,
        accountids=reset,
        not_reset=[accountid for accountid in listed if accountid not in kept],
        reset_so_far=command.reset_before + len(reset),
        done=not command.every_account or len(listed) < deps.bulk_chunk,
    )


# Which rules apply to which command: the entrypoints take theirs from here.
HANDLERS: Mapping[CommandModel, Handler[Any]] = MappingProxyType(
    {
        ResetSessionKey: reset_session_key,
        ResetAccountPassword: reset_account_password,
        ResetSessionKeys: reset_session_keys,
    }
)


def handler_for(model: type[C]) -> Handler[C]:
    return cast("Handler[C]", HANDLERS[model])


def _end_sessions(account: Account, now: datetime) -> None:
    account.session_key = secrets.token_hex(SESSION_KEY_BYTES)
    account.session_key_last_reset_at = now
    # The dashboard's `sessionKeyNumber++` stored the old number; the new key gets the next one.
    # A NULL number is JavaScript's `null + 1`: 1.
    account.session_key_number = (account.session_key_number or 0) + 1
    account.updated_at = now
