"""Database tables: the dashboard's `accounts` and `resetCodes`, and the worker's own outcomes.

Column names are the dashboard's (camelCase), so the worker drops into an existing database.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    accountid: Mapped[str] = mapped_column(String(64), primary_key=True)
    appid: Mapped[str] = mapped_column(String(255))
    profileid: Mapped[str | None] = mapped_column(String(64))
    username_hash: Mapped[str | None] = mapped_column("usernameHash", String(255))
    password_hash: Mapped[str | None] = mapped_column("passwordHash", String(255))
    session_key: Mapped[str | None] = mapped_column("sessionKey", String(255))
    session_key_number: Mapped[int] = mapped_column("sessionKeyNumber", Integer, default=1)
    session_key_last_reset_at: Mapped[datetime | None] = mapped_column(
        "sessionKeyLastResetAt", DateTime(timezone=True)
    )
    deleted_at: Mapped[datetime | None] = mapped_column("deletedAt", DateTime(timezone=True))
    last_signed_in_at: Mapped[datetime | None] = mapped_column(
        "lastSignedInAt", DateTime(timezone=True)
    )
    reset_code_last_created_at: Mapped[datetime | None] = mapped_column(
        "resetCodeLastCreatedAt", DateTime(timezone=True)
    )
    reset_code_last_used_at: Mapped[datetime | None] = mapped_column(
        "resetCodeLastUsedAt", DateTime(timezone=True)
    )
    owner_since: Mapped[datetime | None] = mapped_column("ownerSince", DateTime(timezone=True))
    administrator_since: Mapped[datetime | None] = mapped_column(
        "administratorSince", DateTime(timezone=True)
    )
    username_last_changed_at: Mapped[datetime | None] = mapped_column(
        "usernameLastChangedAt", DateTime(timezone=True)
    )
    password_last_changed_at: Mapped[datetime | None] = mapped_column(
        "passwordLastChangedAt", DateTime(timezone=True)
    )
    created_at: Mapped[datetime] = mapped_column("createdAt", DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column("updatedAt", DateTime(timezone=True))

    __table_args__ = (Index("accounts_appid_usernameHash", "appid", "usernameHash"),)


class ResetCode(Base):
    __tablename__ = "resetCodes"

    codeid: Mapped[str] = mapped_column(String(64), primary_key=True)
    appid: Mapped[str] = mapped_column(String(255))
    accountid: Mapped[str] = mapped_column(String(64))
    secret_code_hash: Mapped[str] = mapped_column("secretCodeHash", String(255))
    created_at: Mapped[datetime] = mapped_column("createdAt", DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column("updatedAt", DateTime(timezone=True))

    __table_args__ = (Index("resetCodes_accountid_appid", "accountid", "appid"),)


class OutcomeRecord(Base):
    """The outcome of each command_id: the idempotency record and the event outbox in one.

    Written in the same transaction as the update it records, so an applied command always has
    its outcome and a rolled-back one never does.
    """

    __tablename__ = "account_reset_outcomes"

    command_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    command: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(64))
    appid: Mapped[str | None] = mapped_column(String(255))
    accountid: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("account_reset_outcomes_unpublished", "published_at", "recorded_at"),)
