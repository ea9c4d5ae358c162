"""The dashboard's tables, exactly as its Sequelize models create them, where they are missing.

`accounts`, `resetCodes` and `metrics` (the ones the worker reads or writes) get the types,
nullability, defaults, primary keys and the unique `usernameHash` that `sequelize.sync()` gives
them on each dialect, so whichever of the dashboard and the worker starts first, the other
works. Tables that exist are the dashboard's and are left alone, except the two that revision
0001 used to create in a shape of its own (no unique username, NOT NULL columns, two extra
indexes): those are brought to the dashboard's shape.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from worker.db.column_types import DashboardDate

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Indexes only the old revision 0001 made; finding one means the table is its.
OLD_INDEXES = {
    "accounts": "accounts_appid_usernameHash",
    "resetCodes": "resetCodes_accountid_appid",
}
ACCOUNT_DATES = (
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


def _appid_default() -> str:
    """Sequelize declares `appid DEFAULT '<the dashboard's appid>'`; the worker's APPID."""
    return str(context.config.attributes.get("appid", "dashboard"))


def _key(name: str) -> sa.Column[str]:
    # Sequelize writes `PRIMARY KEY` without `NOT NULL`. Other databases imply NOT NULL; SQLite
    # does not, and reports the difference, so it is left out here too.
    return sa.Column(name, sa.String(64), primary_key=True, nullable=True)


def _appid() -> sa.Column[str]:
    return sa.Column("appid", sa.String(255), server_default=_appid_default())


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("createdAt", DashboardDate()),
        sa.Column("updatedAt", DashboardDate(whole_seconds=True), nullable=False),
    ]


def _unique_username_name() -> str | None:
    # The name each database gives Sequelize's unnamed `UNIQUE` on the column.
    return {"postgresql": "accounts_usernameHash_key", "sqlite": None}.get(
        op.get_bind().dialect.name, "usernameHash"
    )


def _create_accounts() -> None:
    op.create_table(
        "accounts",
        _key("accountid"),
        _appid(),
        sa.Column("profileid", sa.String(64)),
        sa.Column("usernameHash", sa.String(255)),
        sa.Column("passwordHash", sa.String(255)),
        sa.Column("sessionKey", sa.String(255)),
        sa.Column("sessionKeyNumber", sa.Integer),
        *(sa.Column(name, DashboardDate()) for name in ACCOUNT_DATES),
        *_timestamps(),
        sa.UniqueConstraint("usernameHash", name=_unique_username_name()),
    )


def _create_reset_codes() -> None:
    op.create_table(
        "resetCodes",
        _key("codeid"),
        _appid(),
        sa.Column("accountid", sa.String(64)),
        sa.Column("secretCodeHash", sa.String(255)),
        *_timestamps(),
    )


def _create_metrics() -> None:
    op.create_table(
        "metrics",
        _key("metricid"),
        _appid(),
        sa.Column("value", sa.Integer, server_default=sa.text("0")),
        *_timestamps(),
    )


def _repair_old_accounts() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_index(OLD_INDEXES["accounts"])
        batch.alter_column(
            "appid", existing_type=sa.String(255), nullable=True, server_default=_appid_default()
        )
        batch.alter_column(
            "sessionKeyNumber", existing_type=sa.Integer, nullable=True, server_default=None
        )
        batch.alter_column("createdAt", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.create_unique_constraint(
            _unique_username_name() or "accounts_usernameHash_key", ["usernameHash"]
        )


def _repair_old_reset_codes() -> None:
    with op.batch_alter_table("resetCodes") as batch:
        batch.drop_index(OLD_INDEXES["resetCodes"])
        batch.alter_column(
            "appid", existing_type=sa.String(255), nullable=True, server_default=_appid_default()
        )
        for name in ("accountid", "secretCodeHash"):
            batch.alter_column(name, existing_type=sa.String(255), nullable=True)
        batch.alter_column("createdAt", existing_type=sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    creators = {
        "accounts": (_create_accounts, _repair_old_accounts),
        "resetCodes": (_create_reset_codes, _repair_old_reset_codes),
    }
    for table, (create, repair) in creators.items():
        if table not in existing:
            create()
        elif OLD_INDEXES[table] in {index["name"] for index in inspector.get_indexes(table)}:
            repair()
    if "metrics" not in existing:
        _create_metrics()


def downgrade() -> None:
    # The dashboard's tables hold the dashboard's data: they stay.
    pass
