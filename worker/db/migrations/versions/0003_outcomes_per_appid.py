"""Outcomes keyed by (appid, command_id), each with its request's fingerprint.

A command_id was one key across every appid, and its outcome was replayed to any request that
reused it. The outcome table gains `scope` (the appid the command was processed under, "" for
an unusable one) and `fingerprint` (the request's, see worker/security/fingerprints.py), and its
primary key becomes (scope, command_id). Rows already there take their scope from their own `appid`
and keep no fingerprint: the worker replays them as before.

`scope` keeps the default "" so that a worker of the old revision still running during the
upgrade can record; its rows then live in the scope of unusable appids.

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-08
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "account_reset_outcomes"
PRIMARY_KEY = "account_reset_outcomes_pkey"  # PostgreSQL's name for 0001's key, kept


def _scope() -> sa.Column[str]:
    return sa.Column("scope", sa.String(255), nullable=False, server_default="")


def _fingerprint() -> sa.Column[str]:
    return sa.Column("fingerprint", sa.String(64), nullable=True)


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[datetime]:
    precise = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return sa.Column(name, precise, nullable=nullable)


def _sqlite_outcomes_keyed_by(*key: str) -> sa.Table:
    """The table as 0001 made it plus this revision's columns, keyed by `key`: what SQLite's
    batch mode copies the rows into (it changes a primary key only by copying the table)."""
    return sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("command_id", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code", sa.String(64)),
        sa.Column("appid", sa.String(255)),
        sa.Column("accountid", sa.String(64)),
        sa.Column("event", sa.Text, nullable=False),
        _timestamp("recorded_at", nullable=False),
        _timestamp("published_at"),
        _scope(),
        _fingerprint(),
        sa.PrimaryKeyConstraint(*key, name=PRIMARY_KEY),
        sa.Index("account_reset_outcomes_unpublished", "published_at", "recorded_at"),
    )


def _fill_scopes() -> None:
    outcomes = sa.table(TABLE, sa.column("scope", sa.String), sa.column("appid", sa.String))
    op.execute(outcomes.update().values(scope=sa.func.coalesce(outcomes.c.appid, "")))


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        with op.batch_alter_table(TABLE) as batch:
            batch.add_column(_scope())
            batch.add_column(_fingerprint())
        _fill_scopes()
        rekeyed = _sqlite_outcomes_keyed_by("scope", "command_id")
        with op.batch_alter_table(TABLE, copy_from=rekeyed, recreate="always"):
            pass
        return
    op.add_column(TABLE, _scope())
    op.add_column(TABLE, _fingerprint())
    _fill_scopes()
    if dialect in ("mysql", "mariadb"):
        # One statement: MariaDB's DDL is not transactional, and the table never lacks a key.
        op.execute(f"ALTER TABLE {TABLE} DROP PRIMARY KEY, ADD PRIMARY KEY (scope, command_id)")
        return
    op.drop_constraint(PRIMARY_KEY, TABLE, type_="primary")
    op.create_primary_key(PRIMARY_KEY, TABLE, ["scope", "command_id"])


def downgrade() -> None:
    outcomes = sa.table(TABLE, sa.column("command_id", sa.String))
    reused = op.get_bind().execute(
        sa.select(outcomes.c.command_id)
        .group_by(outcomes.c.command_id)
        .having(sa.func.count() > 1)
        .limit(1)
    )
    if reused.first() is not None:
        raise RuntimeError(
            f"{TABLE} holds a command_id recorded in several appids, which revision 0002 cannot"
            " key: delete those rows (or wait for OUTCOME_RETENTION_DAYS) before downgrading"
        )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        rekeyed = _sqlite_outcomes_keyed_by("command_id")
        with op.batch_alter_table(TABLE, copy_from=rekeyed, recreate="always") as batch:
            batch.drop_column("fingerprint")
            batch.drop_column("scope")
        return
    if dialect in ("mysql", "mariadb"):
        op.execute(f"ALTER TABLE {TABLE} DROP PRIMARY KEY, ADD PRIMARY KEY (command_id)")
    else:
        op.drop_constraint(PRIMARY_KEY, TABLE, type_="primary")
        op.create_primary_key(PRIMARY_KEY, TABLE, ["command_id"])
    op.drop_column(TABLE, "fingerprint")
    op.drop_column(TABLE, "scope")
