"""`account-reset health`'s answer for one worker node, read from the notes it keeps
(worker/ops/health_notes.py): nothing here connects to anything."""

from __future__ import annotations

import time
from pathlib import Path

from worker.broker.refusals import current_refusal
from worker.db.health import current_database_fault
from worker.ops.health_notes import exited, note_fields
from worker.steps.liveness import last_consuming_at


def node_problem(note: Path, *, max_age_s: float, now: float | None = None) -> str | None:
    """Why the node whose liveness note is `note` is unhealthy, or None if it consumes."""
    # Redis refusing the worker's commands (full, a replica...) within the last seconds: it
    # retries, but serves nothing meanwhile.
    refused = current_refusal(note)
    if refused is not None:
        return refused
    # The database refusing writes (read-only after a failover, shut down...) just now.
    unwritable = current_database_fault(note)
    if unwritable is not None:
        return unwritable
    fields = note_fields(note)
    if exited(fields):
        return f"worker pid {fields['pid']} has exited"
    noted = last_consuming_at(note)
    if noted is None:
        return f"no note in {note}"
    age = (time.time() if now is None else now) - noted
    if age > max_age_s:
        return f"last consumed {age:.0f} s ago"
    return None


def consumed_s_ago(note: Path) -> float:
    noted = last_consuming_at(note)
    return float("inf") if noted is None else time.time() - noted
