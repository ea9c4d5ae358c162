"""Accounts and reset codes made the dashboard's way, for the demo, the benchmark and the tests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from worker.db.models import Account, ResetCode
from worker.security.hashing import Hasher

# For accounts made in bulk (the benchmark): a bcrypt hash's shape, which no password matches.
# The worker never checks a password, it only replaces the hash; bcrypt would only cost time.
PLACEHOLDER_PASSWORD_HASH = "$2b$04$" + "x" * 53


@dataclass(frozen=True)
class SeededAccount:
    accountid: str
    appid: str
    username: str


def create_account(
    session: Session,
    hasher: Hasher,
    *,
    appid: str,
    username: str,
    password: str | None,
    deleted: bool = False,
    owner: bool = False,
    now: datetime | None = None,
) -> SeededAccount:
    """An account; `password` None stores PLACEHOLDER_PASSWORD_HASH (no bcrypt). `owner`: its
    owner and administrator, as the dashboard makes the first account of an appid."""
    now = now or datetime.now(UTC)
    account = Account(
        accountid=f"acct_{secrets.token_hex(8)}",
        appid=appid,
        username_hash=hasher.lookup_hash(username),
        password_hash=(
            PLACEHOLDER_PASSWORD_HASH if password is None else hasher.password_hash(password)
        ),
        session_key=secrets.token_hex(32),
        session_key_number=1,
        deleted_at=now if deleted else None,
        owner_since=now if owner else None,
        administrator_since=now if owner else None,
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    return SeededAccount(accountid=account.accountid, appid=appid, username=username)


def create_reset_code(
    session: Session,
    hasher: Hasher,
    account: SeededAccount,
    *,
    code: str,
    created_at: datetime | None = None,
) -> str:
    now = created_at or datetime.now(UTC)
    codeid = f"code_{secrets.token_hex(8)}"
    session.add(
        ResetCode(
            codeid=codeid,
            appid=account.appid,
            accountid=account.accountid,
            secret_code_hash=hasher.lookup_hash(code),
            created_at=now,
            updated_at=now,
        )
    )
    return codeid
