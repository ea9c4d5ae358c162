"""Accounts and reset codes for the benchmark, inserted in bulk (no bcrypt: the stored
password hash is never checked, only replaced)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from worker.db.models import Account, ResetCode
from worker.security.hashing import Hasher

APPID = "bench"
PLACEHOLDER_HASH = "$2b$04$" + "x" * 53


@dataclass(frozen=True)
class Seeded:
    accountid: str
    username: str
    code: str


def seed_accounts(engine: sa.Engine, hasher: Hasher, count: int, *, codes: bool) -> list[Seeded]:
    now = datetime.now(UTC)
    made = [
        Seeded(f"acct_{secrets.token_hex(8)}", f"user-{secrets.token_hex(6)}", secrets.token_hex(4))
        for _ in range(count)
    ]
    with Session(engine) as session, session.begin():
        session.add_all(
            Account(
                accountid=m.accountid, appid=APPID, username_hash=hasher.lookup_hash(m.username),
                password_hash=PLACEHOLDER_HASH, session_key=secrets.token_hex(32),
                session_key_number=1, created_at=now, updated_at=now,
            )
            for m in made
        )  # fmt: skip
        if codes:
            session.add_all(
                ResetCode(
                    codeid=f"code_{secrets.token_hex(8)}", appid=APPID, accountid=m.accountid,
                    secret_code_hash=hasher.lookup_hash(m.code), created_at=now, updated_at=now,
                )
                for m in made
            )  # fmt: skip
    return made


def applied(engine: sa.Engine, accounts: list[Seeded]) -> int:
    """How many of the accounts had their sessions ended (key number moved on)."""
    ids = [a.accountid for a in accounts]
    query = sa.select(sa.func.count()).where(
        Account.accountid.in_(ids), Account.session_key_number > 1
    )
    with engine.connect() as connection:
        return int(connection.scalar(query) or 0)
