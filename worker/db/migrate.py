"""Alembic, driven from code: `account-reset db upgrade`, `db downgrade` and `db current`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from worker.db.engine import create_db_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# The worker's own version table, apart from anything the dashboard keeps in the database.
VERSION_TABLE = "account_reset_alembic_version"


def alembic_config(database_url: str, *, appid: str = "dashboard") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Passed as an attribute, not an ini option, so a '%' in the URL needs no escaping.
    config.attributes["database_url"] = database_url
    # The dashboard declares `appid DEFAULT '<its appid>'` on its tables; so do these.
    config.attributes["appid"] = appid
    return config


def upgrade(database_url: str, revision: str = "head", *, appid: str = "dashboard") -> None:
    command.upgrade(alembic_config(database_url, appid=appid), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Down to `revision` (the worker's own table only: the dashboard's tables stay)."""
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> tuple[str | None, str]:
    """The database's revision (None before the first upgrade) and the latest one there is."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            revision = context.get_current_revision()
    finally:
        engine.dispose()
    return revision, head or ""
