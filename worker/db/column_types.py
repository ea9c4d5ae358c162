"""Column types that store what the dashboard's Sequelize stores, on every database it runs on.

Sequelize writes a `DATE` column differently per dialect, and the worker must read and write the
same thing:

- SQLite: text such as `2026-11-23 17:55:51.669 +00:00` (milliseconds, the connection's offset);
- PostgreSQL: `timestamp with time zone`;
- MariaDB/MySQL: `DATETIME(6)` holding UTC without an offset (Sequelize's `timezone: '+00:00'`),
  and `DATETIME` (whole seconds) for `updatedAt`, which Sequelize adds as a plain `DATE`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# Sequelize's SQLite text, and what else a date in SQLite text may look like (ISO 8601 with a
# `T` or a `Z`, no fraction, no offset: SQLAlchemy's own format, which earlier versions wrote).
_SQLITE_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def sequelize_sqlite_text(moment: datetime) -> str:
    """`moment` as Sequelize writes it to SQLite: UTC, milliseconds, ` +00:00`."""
    utc = as_utc(moment)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d} +00:00"


def parse_sqlite_text(text: str) -> datetime:
    """A date as SQLite text, in any of the forms above; no offset means UTC."""
    match = _SQLITE_DATE.match(text.strip())
    if match is None:
        raise ValueError("not a date this worker can read")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    parts = (int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro)
    return datetime(*parts, tzinfo=_offset(offset)).astimezone(UTC)


def _offset(text: str | None) -> timezone:
    if text is None or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class DashboardDate(TypeDecorator[datetime]):
    """A Sequelize `DATE`: aware UTC datetimes in Python, the dashboard's form in the database.

    `whole_seconds` is Sequelize's implicit `updatedAt`, which is `DATETIME` without a fraction
    on MariaDB/MySQL (the same as the others elsewhere).
    """

    impl = DateTime
    cache_ok = True

    def __init__(self, *, whole_seconds: bool = False) -> None:
        super().__init__(timezone=True)
        self.whole_seconds = whole_seconds

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            # Declared DATETIME, as Sequelize declares it; stored as its text.
            return dialect.type_descriptor(_SqliteDateText())
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=0 if self.whole_seconds else 6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return sequelize_sqlite_text(value)
        if dialect.name in ("mysql", "mariadb"):
            return as_utc(value).replace(tzinfo=None)
        return as_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite" or not isinstance(value, datetime):
            return parse_sqlite_text(str(value))
        return as_utc(value)


class _SqliteDateText(String):
    """SQLite text that DDL calls DATETIME (SQLite's affinity for it is NUMERIC, text stays)."""

    __visit_name__ = "DATETIME"

    def __init__(self) -> None:
        super().__init__()
