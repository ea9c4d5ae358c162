"""Fault tests (`make test-faults`): real processes, real signals, real outages.

Their fixtures: a PostgreSQL server of the test's own, which it may stop, kill and restart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import PrivatePostgres
from worker.db.migrate import upgrade


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture
def private_database_url(private_postgres: PrivatePostgres) -> str:
    """A migrated database on the test's own PostgreSQL server."""
    database_url = private_postgres.create_database("accounts")
    upgrade(database_url)
    return database_url
