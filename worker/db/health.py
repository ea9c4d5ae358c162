"""A database the worker cannot write to, noted beside the health file for the probe.

While the database is read-only (a failover to a replica), refuses connections or shuts them
down, every command is retried and none applied; the worker still consumes, so the consuming
note alone would say "healthy". A pool process that meets such a fault notes its cause (in
words, never the server's message) next to the health file, and `account-reset health` reports
it while the note is fresh: "unhealthy: database is read-only".
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from worker.db.faults import fault_cause
from worker.ops.health_notes import ThrottledNote, fresh_note, note_path

log = logging.getLogger(__name__)

# A note older than this is a fault that has passed (commands retry within seconds).
NOTE_FRESH_S = 10.0
# Each process rewrites the note at most this often while the fault goes on.
NOTE_EVERY_S = 1.0
# Contention, not a database that cannot be written: these leave the probe alone.
NOT_NOTED = frozenset({"lock wait timeout", "deadlock", "serialization failure"})

_notes = ThrottledNote("database fault", every_s=NOTE_EVERY_S)


def database_note_path(health_file: Path) -> Path:
    return note_path(health_file, "database")


def note_database_fault(exc: BaseException, health_file: Path) -> None:
    """Note a fault that keeps the worker from writing (read-only, refused, shut down)."""
    if not isinstance(exc, DBAPIError):
        return
    cause = fault_cause(exc)
    if cause is None or cause in NOT_NOTED:
        return
    # One kind for every cause: a process notes one database fault a second at the most.
    _notes.write(database_note_path(health_file), "database", {"cause": cause})


def current_database_fault(health_file: Path, *, now: float | None = None) -> str | None:
    """The cause noted within NOTE_FRESH_S ("database is read-only"), else None."""
    note = fresh_note(database_note_path(health_file), fresh_s=NOTE_FRESH_S, now=now)
    if note is None or "cause" not in note:
        return None
    cause = str(note["cause"])
    # "connection refused" alone could be Redis's.
    return cause if cause.startswith("database") else f"database: {cause}"
