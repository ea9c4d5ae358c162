"""The tables `account-reset db upgrade` makes are the ones the dashboard's Sequelize makes.

Per database: one database set up by the real dashboard (`sequelize.sync()`), one by the
worker's migrations alone, and one where the old revision 0001 made `accounts` and `resetCodes`
its own way (no unique `usernameHash`, NOT NULL columns, two extra indexes) before the upgrade.
Each of the worker's tables is then compared, as the database itself reports it: column names
in order, types, nullability, defaults, primary key, unique keys and indexes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e.dashboard.driver import Dashboard, dashboard_storage_env
from tests.support import databases
from tests.support.ids import unique
from worker.db.column_types import DashboardDate
from worker.db.engine import create_db_engine
from worker.db.migrate import upgrade
from worker.db.models import Account

DASHBOARD_TABLES = ("accounts", "resetCodes", "metrics")
ACCOUNT_DATES = [
    column.name
    for column in Account.__table__.columns
    if isinstance(column.type, DashboardDate) and column.name not in ("createdAt", "updatedAt")
]

# What the old revision 0001 created, and Alembic's record of it.
OLD_0001_DDL = [
    "CREATE TABLE accounts (accountid VARCHAR(64) PRIMARY KEY, appid VARCHAR(255) NOT NULL,"
    ' profileid VARCHAR(64), "usernameHash" VARCHAR(255), "passwordHash" VARCHAR(255),'
    ' "sessionKey" VARCHAR(255), "sessionKeyNumber" INTEGER DEFAULT 1 NOT NULL, '
    + ", ".join(f'"{name}" {{date}}' for name in ACCOUNT_DATES)
    + ', "createdAt" {date} NOT NULL, "updatedAt" {date} NOT NULL)',
    'CREATE INDEX "accounts_appid_usernameHash" ON accounts (appid, "usernameHash")',
    'CREATE TABLE "resetCodes" (codeid VARCHAR(64) PRIMARY KEY, appid VARCHAR(255) NOT NULL,'
    ' accountid VARCHAR(64) NOT NULL, "secretCodeHash" VARCHAR(255) NOT NULL,'
    ' "createdAt" {date} NOT NULL, "updatedAt" {date} NOT NULL)',
    'CREATE INDEX "resetCodes_accountid_appid" ON "resetCodes" (accountid, appid)',
]
OLD_DATE_TYPES = {"sqlite": "DATETIME", "postgresql": "TIMESTAMP WITH TIME ZONE"}


def _default(value: Any) -> str | None:
    """A default as the database reports it, without casts or quotes: `'x'::varchar` is x."""
    if value is None:
        return None
    text = re.sub(r"::[\w ]+$", "", str(value)).strip()
    return None if text.upper() == "NULL" else text.strip("'")


def described(engine: sa.Engine, table: str) -> dict[str, Any]:
    inspector = sa.inspect(engine)
    columns = [
        (c["name"], str(c["type"]), c["nullable"], _default(c.get("default")))
        for c in inspector.get_columns(table)
    ]
    uniques = {tuple(map(str, u["column_names"])) for u in inspector.get_unique_constraints(table)}
    # SQLite reports a column's inline UNIQUE only as its automatic index.
    found = inspector.get_indexes(table, include_auto_indexes=True)
    indexes = [(tuple(map(str, i["column_names"])), bool(i["unique"])) for i in found]
    primary_key = inspector.get_pk_constraint(table)["constrained_columns"]
    # A unique key is reported as an index too on some databases; it is the same key (and the
    # primary key's own index is the primary key).
    uniques |= {columns for columns, unique_ in indexes if unique_}
    uniques.discard(tuple(primary_key))
    return {
        "columns": columns,
        "primary key": primary_key,
        "unique": sorted(uniques),
        "plain indexes": sorted(columns for columns, unique_ in indexes if not unique_),
    }


def _by_the_dashboard(url: str, appid: str) -> None:
    dashboard = Dashboard({"APPID": appid, **dashboard_storage_env(url)})
    dashboard.close()


def _by_the_old_worker(url: str, appid: str) -> None:
    upgrade(url, "0001", appid=appid)
    engine = create_db_engine(url)
    date = OLD_DATE_TYPES[engine.dialect.name]
    with engine.begin() as connection:
        for statement in OLD_0001_DDL:
            statement = statement.replace("{date}", date)
            connection.exec_driver_sql(statement)
    engine.dispose()
    upgrade(url, appid=appid)


@pytest.mark.parametrize("backend", databases.BACKENDS)
def test_the_workers_tables_are_the_dashboards_whoever_makes_them(
    backend: str, tmp_path: Path
) -> None:
    appid = unique("schema").replace("-", "_")
    schemas = {}
    makers = {
        "dashboard": _by_the_dashboard,
        "worker": lambda url, appid: upgrade(url, appid=appid),
        "old worker, upgraded": _by_the_old_worker,
    }
    if backend == "mariadb":
        del makers["old worker, upgraded"]  # the old worker never ran on MariaDB
    for maker, make in makers.items():
        with databases.backend_database(backend, tmp_path) as url:
            make(url, appid)
            engine = create_db_engine(url)
            schemas[maker] = {table: described(engine, table) for table in DASHBOARD_TABLES}
            engine.dispose()

    assert schemas["dashboard"]["accounts"]["unique"] == [("usernameHash",)]
    assert schemas["worker"] == schemas["dashboard"]
    assert schemas.get("old worker, upgraded", schemas["dashboard"]) == schemas["dashboard"]
