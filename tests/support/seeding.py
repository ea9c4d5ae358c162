"""Accounts and reset codes the dashboard's way, each committed at once, and reads of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.support.ids import unique
from worker.db.engine import create_db_engine, session_factory
from worker.db.models import Account, ResetCode
from worker.dev.seeding import SeededAccount, create_account, create_reset_code
from worker.security.hashing import Hasher


class Seeder:
    """Creates accounts and reset codes the dashboard's way, each committed at once."""

    def __init__(self, database_url: str, hasher: Hasher) -> None:
        self.engine = create_db_engine(database_url)
        self.sessions = session_factory(self.engine)
        self.hasher = hasher

    def account(
        self, *, appid: str = "test-app", password: str = "old-password", deleted: bool = False
    ) -> SeededAccount:
        with self.sessions.begin() as session:
            return create_account(
                session,
                self.hasher,
                appid=appid,
                username=unique("user"),
                password=password,
                deleted=deleted,
            )

    def accounts(self, count: int, *, appid: str) -> list[str]:
        """`count` new accounts of `appid`, in one transaction; their accountids."""
        with self.sessions.begin() as session:
            return [
                create_account(
                    session, self.hasher, appid=appid, username=unique("user"),
                    password="old-password", deleted=False,
                ).accountid
                for _ in range(count)
            ]  # fmt: skip

    def code(
        self, account: SeededAccount, code: str | None = None, *, age: timedelta | None = None
    ) -> str:
        code = code or unique("code")
        created_at = None if age is None else datetime.now(UTC) - age
        with self.sessions.begin() as session:
            create_reset_code(session, self.hasher, account, code=code, created_at=created_at)
        return code

    def load(self, accountid: str) -> Account:
        with self.sessions() as session:
            account = session.get(Account, accountid)
            assert account is not None
            return account

    def key_numbers(self, accountids: list[str]) -> dict[str, int | None]:
        """Each account's session key number, read at once."""
        with self.sessions() as session:
            query = sa.select(Account.accountid, Account.session_key_number).where(
                Account.accountid.in_(accountids)
            )
            return {accountid: number for accountid, number in session.execute(query)}

    def codes_of(self, accountid: str) -> int:
        with self.sessions() as session:
            query = sa.select(sa.func.count()).where(ResetCode.accountid == accountid)
            return int(session.scalar(query) or 0)
