"""Database tables: the dashboard's `accounts`, `resetCodes`, `metrics`; the worker's outcomes.

The dashboard's tables are declared as its Sequelize models create them (names, types,
nullability, the unique `usernameHash`), so the worker drops into an existing database and a
database the worker set up first is one the dashboard accepts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from worker.db.column_types import DashboardDate


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    accountid: Mapped[str] = mapped_column(String(64), primary_key=True)
    appid: Mapped[str] = mapped_column(String(255), nullable=True)
    profileid: Mapped[str | None] = mapped_column(String(64))
    username_hash: Mapped[str | None] = mapped_column("usernameHash", String(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column("passwordHash", String(255))
    session_key: Mapped[str | None] = mapped_column("sessionKey", String(255))
    session_key_number: Mapped[int | None] = mapped_column("sessionKeyNumber", Integer)
    session_key_last_reset_at: Mapped[datetime | None] = mapped_column(
        "sessionKeyLastResetAt", DashboardDate()
    )
    deleted_at: Mapped[datetime | None] = mapped_column("deletedAt", DashboardDate())
    last_signed_in_at: Mapped[datetime | None] = mapped_column("lastSignedInAt", DashboardDate())
    reset_code_last_created_at: Mapped[datetime | None] = mapped_column(
        "resetCodeLastCreatedAt", DashboardDate()
    )
    reset_code_last_used_at: Mapped[datetime | None] = mapped_column(
        "resetCodeLastUsedAt", DashboardDate()
    )
    owner_since: Mapped[datetime | None] = mapped_column("ownerSince", DashboardDate())
    administrator_since: Mapped[datetime | None] = mapped_column(
        "administratorSince", DashboardDate()
    )
    username_last_changed_at: Mapped[datetime | None] = mapped_column(
        "usernameLastChangedAt", DashboardDate()
    )
    password_last_changed_at: Mapped[datetime | None] = mapped_column(
        "passwordLastChangedAt", DashboardDate()
    )
    created_at: Mapped[datetime | None] = mapped_column("createdAt", DashboardDate())
    updated_at: Mapped[datetime] = mapped_column(
        "updatedAt", DashboardDate(whole_seconds=True), nullable=False
    )


class ResetCode(Base):
    __tablename__ = "resetCodes"

    codeid: Mapped[str] = mapped_column(String(64), primary_key=True)
    appid: Mapped[str] = mapped_column(String(255), nullable=True)
    accountid: Mapped[str] = mapped_column(String(64), nullable=True)
    secret_code_hash: Mapped[str] = mapped_column("secretCodeHash", String(255), nullable=True)
    created_at: Mapped[datetime | None] = mapped_column("createdAt", DashboardDate())
    updated_at: Mapped[datetime] = mapped_column(
        "updatedAt", DashboardDate(whole_seconds=True), nullable=False
    )


class Metric(Base):
    """The dashboard's own counters (`<name>/<yyyy>`, `/<yyyy-mm>`, `/<yyyy-mm-dd>`, `/total`)."""

    __tablename__ = "metrics"

    metricid: Mapped[str] = mapped_column(String(64), primary_key=True)
    appid: Mapped[str] = mapped_column(String(255), nullable=True)
    value: Mapped[int] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime | None] = mapped_column("createdAt", DashboardDate())
    updated_at: Mapped[datetime] = mapped_column(
        "updatedAt", DashboardDate(whole_seconds=True), nullable=False
    )


# The worker's own timestamps; microseconds on MariaDB/MySQL too.
_PRECISE_TIMESTAMP = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class OutcomeRecord(Base):
    """The outcome of each command_id in an appid: the idempotency record and the event outbox.

    Written in the same transaction as the update it records, so an applied command always has
    its outcome and a rolled-back one never does.
    """

    __tablename__ = "account_reset_outcomes"

    # The appid the command was processed under ("" for an unusable one): a command_id is
    # unique within it, so producers of different appids cannot claim each other's ids.
    scope: Mapped[str] = mapped_column(String(255), primary_key=True, server_default="")
    command_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # The request's fingerprint (worker/security/fingerprints.py); NULL on rows recorded
    # before 0003.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    command: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(64))
    appid: Mapped[str | None] = mapped_column(String(255))
    accountid: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(_PRECISE_TIMESTAMP)
    published_at: Mapped[datetime | None] = mapped_column(_PRECISE_TIMESTAMP)

    __table_args__ = (Index("account_reset_outcomes_unpublished", "published_at", "recorded_at"),)
