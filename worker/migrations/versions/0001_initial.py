"""The dashboard's tables where they are missing, and the worker's outcomes table.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DASHBOARD_TABLES = ("accounts", "resetCodes")


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _create_accounts() -> None:
    op.create_table(
        "accounts",
        sa.Column("accountid", sa.String(64), primary_key=True),
        sa.Column("appid", sa.String(255), nullable=False),
        sa.Column("profileid", sa.String(64)),
        sa.Column("usernameHash", sa.String(255)),
        sa.Column("passwordHash", sa.String(255)),
        sa.Column("sessionKey", sa.String(255)),
        sa.Column("sessionKeyNumber", sa.Integer, nullable=False, server_default="1"),
        *(
            _timestamp(name)
            for name in (
                "sessionKeyLastResetAt",
                "deletedAt",
                "lastSignedInAt",
                "resetCodeLastCreatedAt",
                "resetCodeLastUsedAt",
                "ownerSince",
                "administratorSince",
                "usernameLastChangedAt",
                "passwordLastChangedAt",
            )
        ),
        _timestamp("createdAt", nullable=False),
        _timestamp("updatedAt", nullable=False),
    )
    op.create_index("accounts_appid_usernameHash", "accounts", ["appid", "usernameHash"])


def _create_reset_codes() -> None:
    op.create_table(
        "resetCodes",
        sa.Column("codeid", sa.String(64), primary_key=True),
        sa.Column("appid", sa.String(255), nullable=False),
        sa.Column("accountid", sa.String(64), nullable=False),
        sa.Column("secretCodeHash", sa.String(255), nullable=False),
        _timestamp("createdAt", nullable=False),
        _timestamp("updatedAt", nullable=False),
    )
    op.create_index("resetCodes_accountid_appid", "resetCodes", ["accountid", "appid"])


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    # On the dashboard's own database these exist already: leave them exactly as they are.
    if "accounts" not in existing:
        _create_accounts()
    if "resetCodes" not in existing:
        _create_reset_codes()
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
