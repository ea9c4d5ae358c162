"""Database faults by cause: which ones a new connection cures, and how to say them in words.

A failover to a replica (or back) shows as a read-only database, a server that cannot take
connections for a moment, or an administrator's shutdown of the session. Each is over in
seconds, so a command that met one is retried; and a connection that met one is discarded,
because a session opened during a read-only phase stays read-only after it (PostgreSQL keeps
the session's `transaction_read_only`, and the pool neither pings nor recycles).

Logs, metrics and dead letters name a fault by its cause in fixed words, never by the
server's message, which may quote a value of the statement (a key, a hash).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError

READ_ONLY = "database is read-only"

# PostgreSQL SQLSTATEs.
_PG_CAUSES = {
    "25006": READ_ONLY,  # read_only_sql_transaction
    "57P01": "database shut the connection down (admin shutdown)",
    "57P02": "database crashed (crash shutdown)",
    "57P03": "database cannot take connections now",
    "25P03": "transaction cut off after sitting idle (idle-in-transaction timeout)",
    "55P03": "lock wait timeout",
    "40P01": "deadlock",
    "40001": "serialization failure",
    "57014": "statement cancelled",
    "53300": "too many connections",
}
# SQLSTATEs after which the connection is thrown away rather than returned to the pool.
_PG_DISCARD = frozenset({"25006", "57P01", "57P02", "57P03", "25P03"})

# MariaDB/MySQL error numbers.
_MYSQL_CAUSES = {
    1290: READ_ONLY,  # ER_OPTION_PREVENTS_STATEMENT: the server runs with --read-only
    1792: READ_ONLY,  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    1836: READ_ONLY,  # ER_READ_ONLY_MODE
    1205: "lock wait timeout",
    1213: "deadlock",
    1040: "too many connections",
    1053: "database shut the connection down (server shutdown)",
    1927: "database shut the connection down (connection killed)",
    4031: "transaction cut off after sitting idle (idle_transaction_timeout)",
    2003: "connection refused",
    2006: "connection lost (server has gone away)",
    2013: "connection lost during a statement",
}
_MYSQL_DISCARD = frozenset({1290, 1792, 1836, 1053, 1927, 4031})

_CLIENT_MODULES = frozenset({"psycopg", "pymysql", "MySQLdb", "sqlite3", "redis"})

# SQLite, which has no error codes in its Python exceptions: the fixed message prefixes.
_SQLITE_CAUSES = {
    "database is locked": "lock wait timeout",
    "attempt to write a readonly database": READ_ONLY,
    "database or disk is full": "disk full",
    "unable to open database file": "cannot open the database file",
}


def fault_cause(exc: BaseException) -> str | None:
    """The cause of a database fault in words, or None when it is not one this module knows."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate in _PG_CAUSES:
            return _PG_CAUSES[sqlstate]
        if sqlstate.startswith("08"):
            return "connection lost"
    errno = _mysql_errno(orig)
    if errno is not None and errno in _MYSQL_CAUSES:
        return _MYSQL_CAUSES[errno]
    return _sqlite_cause(orig) or _connection_cause(orig)


def discards_connection(exc: BaseException | None) -> bool:
    """True for a fault a fresh session cures (read-only, failover, shutdown, idle cut-off)."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _PG_DISCARD
    errno = _mysql_errno(exc)
    if errno is not None:
        return errno in _MYSQL_DISCARD
    return False


def described(exc: BaseException) -> str:
    """`ClassName: cause in words` (or the class name alone when the cause is unknown)."""
    cause = fault_cause(exc)
    name = type(exc).__name__
    return f"{name}: {cause}" if cause else name


def _mysql_errno(exc: Any) -> int | None:
    # PyMySQL (and mysqlclient) errors carry (errno, message) as their args.
    if type(exc).__module__.split(".")[0] not in ("pymysql", "MySQLdb"):
        return None
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _sqlite_cause(exc: Any) -> str | None:
    if type(exc).__module__ != "sqlite3":
        return None
    text = str(exc)
    return next(
        (cause for prefix, cause in _SQLITE_CAUSES.items() if text.startswith(prefix)), None
    )


def _connection_cause(exc: Any) -> str | None:
    # psycopg reports a failed connect without a SQLSTATE; its text is the libpq message,
    # which names the host but no statement value, and is only matched here, never shown.
    # Only a driver's (or Redis's) errors: any other message may quote a payload value.
    if type(exc).__module__.split(".")[0] not in _CLIENT_MODULES:
        return None
    text = str(exc).lower()
    for needle, cause in (
        ("connection refused", "connection refused"),
        ("the database system is in recovery mode", "database cannot take connections now"),
        ("the database system is starting up", "database cannot take connections now"),
        ("the database system is shutting down", "database cannot take connections now"),
        ("terminating connection due to idle-in-transaction", _PG_CAUSES["25P03"]),
        ("terminating connection due to administrator command", _PG_CAUSES["57P01"]),
        ("server closed the connection unexpectedly", "connection lost"),
        ("consuming input failed", "connection lost"),
        ("the connection is closed", "connection lost"),
        ("timeout expired", "connection timed out"),
        ("could not translate host name", "database host name not found"),
    ):
        if needle in text:
            return cause
    return None
