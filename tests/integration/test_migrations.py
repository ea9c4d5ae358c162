"""`account-reset db upgrade` on an empty database and on the dashboard's own database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from tests.support import databases
from worker.db.engine import create_db_engine
from worker.db.migrate import alembic_config, upgrade

BACKENDS = pytest.mark.parametrize("fresh_database_url", databases.BACKENDS, indirect=True)

# The dashboard's tables as its Sequelize models make them, with a column the worker
# does not know about, to show the migration leaves them exactly as they were.
DASHBOARD_DDL = [
    "CREATE TABLE accounts (accountid VARCHAR(64) PRIMARY KEY, appid VARCHAR(255) NOT NULL, "
    '"usernameHash" VARCHAR(255), "passwordHash" VARCHAR(255), "sessionKey" VARCHAR(255), '
    '"sessionKeyNumber" INTEGER, "dashboardOnly" VARCHAR(10), '
    '"createdAt" TIMESTAMP, "updatedAt" TIMESTAMP)',
    'CREATE TABLE "resetCodes" (codeid VARCHAR(64) PRIMARY KEY, appid VARCHAR(255), '
    'accountid VARCHAR(64), "secretCodeHash" VARCHAR(255), '
    '"createdAt" TIMESTAMP, "updatedAt" TIMESTAMP)',
    "INSERT INTO accounts (accountid, appid, \"dashboardOnly\") VALUES ('acct_1', 'app', 'kept')",
]


def quoted_for(engine: sa.Engine, statement: str) -> str:
    """MariaDB/MySQL quote names with backticks."""
    return statement.replace('"', "`") if engine.dialect.name in ("mysql", "mariadb") else statement


def columns(engine: sa.Engine, table: str) -> list[str]:
    return [column["name"] for column in sa.inspect(engine).get_columns(table)]


@BACKENDS
def test_upgrade_creates_every_table_on_an_empty_database(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    engine = create_db_engine(fresh_database_url)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"accounts", "resetCodes", "metrics", "account_reset_outcomes"} <= tables
    assert "account_reset_alembic_version" in tables
    assert "sessionKeyLastResetAt" in columns(engine, "accounts")
    assert columns(engine, "resetCodes") == [
        "codeid", "appid", "accountid", "secretCodeHash", "createdAt", "updatedAt",
    ]  # fmt: skip
    engine.dispose()


@BACKENDS
def test_upgrade_on_the_dashboards_database_adds_only_the_workers_table(
    fresh_database_url: str,
) -> None:
    engine = create_db_engine(fresh_database_url)
    with engine.begin() as connection:
        for statement in DASHBOARD_DDL:
            connection.exec_driver_sql(quoted_for(engine, statement))
    before = {table: columns(engine, table) for table in ("accounts", "resetCodes")}

    upgrade(fresh_database_url)
    upgrade(fresh_database_url)  # a second run is a no-op

    assert {table: columns(engine, table) for table in before} == before
    assert "account_reset_outcomes" in sa.inspect(engine).get_table_names()
    with engine.connect() as connection:
        query = quoted_for(engine, 'SELECT "dashboardOnly" FROM accounts')
        kept = connection.exec_driver_sql(query).scalar()
    assert kept == "kept"

    command.downgrade(alembic_config(fresh_database_url), "base")
    tables = set(sa.inspect(engine).get_table_names())
    assert {"accounts", "resetCodes"} <= tables
    assert "account_reset_outcomes" not in tables
    engine.dispose()
