"""Accounts and reset codes for the benchmark, made in bulk by worker/dev/seeding.py (no
bcrypt: the stored password hash is never checked, only replaced)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from worker.db.models import Account
from worker.dev.seeding import create_account, create_reset_code
from worker.security.hashing import Hasher

APPID = "bench"


@dataclass(frozen=True)
class Seeded:
    accountid: str
    username: str
    code: str


def seed_accounts(engine: sa.Engine, hasher: Hasher, count: int, *, codes: bool) -> list[Seeded]:
    now = datetime.now(UTC)
    made = []
    with Session(engine) as session, session.begin():
        for _ in range(count):
            account = create_account(
                session, hasher, appid=APPID, username=f"user-{secrets.token_hex(6)}",
                password=None, now=now,
            )  # fmt: skip
            code = secrets.token_hex(4)
            if codes:
                create_reset_code(session, hasher, account, code=code, created_at=now)
            made.append(Seeded(account.accountid, account.username, code))
    return made


def applied(engine: sa.Engine, accounts: list[Seeded]) -> int:
    """How many of the accounts had their sessions ended (key number moved on)."""
    ids = [a.accountid for a in accounts]
    query = sa.select(sa.func.count()).where(
        Account.accountid.in_(ids), Account.session_key_number > 1
    )
    with engine.connect() as connection:
        return int(connection.scalar(query) or 0)
