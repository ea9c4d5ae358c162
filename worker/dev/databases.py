"""Throwaway databases on a PostgreSQL or MariaDB server, for the benchmark and the tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from worker.db.engine import normalized_url

# How each server makes and drops a database of its own; PostgreSQL ends its connections first.
STATEMENTS = {
    "postgresql": ('CREATE DATABASE "{}"', 'DROP DATABASE IF EXISTS "{}" WITH (FORCE)'),
    "mysql": ("CREATE DATABASE `{}` CHARACTER SET utf8mb4", "DROP DATABASE IF EXISTS `{}`"),
    "mariadb": ("CREATE DATABASE `{}` CHARACTER SET utf8mb4", "DROP DATABASE IF EXISTS `{}`"),
}


@contextmanager
def scratch_database(server_url: str, *, prefix: str = "account_reset_scratch") -> Iterator[str]:
    """The URL of a new, empty database on the server `server_url` reaches (as a user that may
    create databases), dropped on the way out. Its name is `prefix` and a random suffix."""
    server = normalized_url(server_url)
    create, drop = STATEMENTS[server.get_backend_name()]
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # PostgreSQL refuses CREATE DATABASE inside a transaction.
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(create.format(name))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(drop.format(name))
        admin.dispose()
