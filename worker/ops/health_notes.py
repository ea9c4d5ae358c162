"""Notes a worker's processes leave beside its health file for `account-reset health` to read:
one JSON object each, replaced whole (written aside, then renamed), so a probe never reads half."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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


class ThrottledNote:
    """A fault note a process rewrites at most once every `every_s` seconds per kind, while the
    fault goes on; a note that cannot be written is only logged (a note must never turn a
    transient fault into a lasting one)."""

    def __init__(self, what: str, every_s: float) -> None:
        self.what = what
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def write(self, path: Path, kind: str, fields: dict[str, Any]) -> bool:
        """Write `fields` (with `at` and `pid`) unless `kind` was noted within `every_s`;
        whether it was due."""
        now = time.time()
        with self._lock:
            if now - self._last.get(kind, 0.0) < self.every_s:
                return False
            self._last[kind] = now
        try:
            write_note(path, {**fields, "at": now, "pid": os.getpid()})
        except OSError as exc:
            log.warning("%s not noted: %s", self.what, type(exc).__name__)
        return True
