"""Alembic, driven from code: `account-reset db upgrade` runs the worker's migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

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


def current(database_url: str) -> None:
    command.current(alembic_config(database_url), verbose=False)
