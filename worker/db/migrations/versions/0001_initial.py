"""The worker's outcomes table.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[datetime]:
    # Microseconds on MariaDB/MySQL too, whose plain DATETIME keeps whole seconds.
    precise = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return sa.Column(name, precise, nullable=nullable)


def upgrade() -> None:
    # The dashboard's tables are revision 0002's (as Sequelize creates them). Until 0002, this
    # revision created them in a shape of its own, which 0002 repairs where it finds it.
    op.create_table(
        "account_reset_outcomes",
        sa.Column("command_id", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code", sa.String(64)),
        sa.Column("appid", sa.String(255)),
        sa.Column("accountid", sa.String(64)),
        sa.Column("event", sa.Text, nullable=False),
        _timestamp("recorded_at", nullable=False),
        _timestamp("published_at"),
    )
    op.create_index(
        "account_reset_outcomes_unpublished",
        "account_reset_outcomes",
        ["published_at", "recorded_at"],
    )


def downgrade() -> None:
    # The dashboard's tables are the dashboard's: only the worker's own table goes.
    op.drop_index("account_reset_outcomes_unpublished", "account_reset_outcomes")
    op.drop_table("account_reset_outcomes")
