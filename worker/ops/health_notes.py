"""Notes a worker's processes leave beside its health file for `account-reset health` to read:
one JSON object each, replaced whole (written aside, then renamed), so a probe never reads half."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def note_path(health_file: Path, kind: str) -> Path:
    """`<health file>.<kind>`: the note beside the liveness note (tests remove `<file>.*`)."""
    return health_file.with_name(f"{health_file.name}.{kind}")


def write_note(path: Path, fields: dict[str, Any]) -> None:
    """Replace the note at `path` with `fields`; OSError if it cannot be written."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(fields))
    partial.replace(path)


def fresh_note(path: Path, *, fresh_s: float, now: float | None = None) -> dict[str, Any] | None:
    """The note at `path` if its `at` is within `fresh_s` of now; None if absent, unreadable
    or stale."""
    try:
        note = json.loads(path.read_text())
        at = float(note["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(note, dict) or (time.time() if now is None else now) - at > fresh_s:
        return None
    return note
