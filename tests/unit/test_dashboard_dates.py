"""Dates as Sequelize stores them, read and written by the worker on a real SQLite database.

Found: Sequelize writes SQLite dates as `2026-11-23 17:55:51.669 +00:00`, which SQLAlchemy's
DateTime cannot read, so every command on the dashboard's default storage ended in
`internal-error` and was dead-lettered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.databases import migrated_sqlite
from worker.db.column_types import parse_sqlite_text, sequelize_sqlite_text
from worker.db.engine import create_db_engine, session_factory
from worker.db.models import Account

SEQUELIZE_TEXT = "2026-11-23 17:55:51.669 +00:00"
THAT_MOMENT = datetime(2026, 11, 23, 17, 55, 51, 669000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        (SEQUELIZE_TEXT, THAT_MOMENT),
        ("2026-11-23 19:55:51.669 +02:00", THAT_MOMENT),
        ("2026-11-23T17:55:51.669Z", THAT_MOMENT),
        ("2026-11-23 17:55:51.669000", THAT_MOMENT),  # SQLAlchemy's own, from earlier versions
        ("2026-11-23 17:55:51", THAT_MOMENT.replace(microsecond=0)),
    ],
)
def test_each_form_a_date_takes_in_sqlite_reads_as_its_moment(text: str, moment: datetime) -> None:
    assert parse_sqlite_text(text) == moment


def test_the_worker_writes_what_sequelize_writes() -> None:
    plus_two = THAT_MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert sequelize_sqlite_text(plus_two) == SEQUELIZE_TEXT


def test_text_that_is_no_date_is_an_error_not_a_wrong_date() -> None:
    with pytest.raises(ValueError, match="not a date"):
        parse_sqlite_text("yesterday")


def test_a_row_the_dashboard_wrote_on_sqlite_reads_and_is_written_back_its_way(
    tmp_path: Path,
) -> None:
    url = migrated_sqlite(tmp_path)
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            'INSERT INTO accounts (accountid, appid, "sessionKeyNumber", "createdAt",'
            ' "updatedAt") VALUES (?, ?, 1, ?, ?)',
            ("acct_1", "app", SEQUELIZE_TEXT, SEQUELIZE_TEXT),
        )
    with session_factory(engine).begin() as session:
        account = session.get(Account, "acct_1")
        assert account is not None
        assert account.created_at == THAT_MOMENT
        account.session_key_last_reset_at = THAT_MOMENT + timedelta(days=1)
    with engine.connect() as connection:
        stored = connection.execute(sa.text('SELECT "sessionKeyLastResetAt" FROM accounts'))
        assert stored.scalar() == "2026-11-24 17:55:51.669 +00:00"
    engine.dispose()
