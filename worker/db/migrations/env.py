"""Alembic environment: the URL comes from `worker.db.migrate`, never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from worker.db.engine import normalized_url
from worker.db.migrate import VERSION_TABLE
from worker.db.models import Base

config = context.config


def run_migrations() -> None:
    url = config.attributes["database_url"]
    engine = create_engine(normalized_url(url), hide_parameters=True)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=VERSION_TABLE,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
