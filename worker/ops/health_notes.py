"""Notes a worker's processes leave for `account-reset health` to read: one JSON object each,
replaced whole (written aside, then renamed), so a probe never reads half.

Each worker node has notes of its own, in the folder `<HEALTH_FILE>.d`: its liveness note
`<node>.health` and the fault notes beside it (`<node>.health.<kind>`), so that two workers on
one machine never overwrite each other's. The main process names its node's note on
`worker_init`, before the pool forks, and removes its notes when it shuts down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from client.local_broker import alive

log = logging.getLogger(__name__)


NODE_NOTE_SUFFIX = ".health"


def nodes_folder(health_file: Path) -> Path:
    """Where every node of this machine keeps its notes."""
    return health_file.with_name(f"{health_file.name}.d")


def node_note(health_file: Path, node: str) -> Path:
    """Node `node`'s liveness note (a name with `/` would leave the folder: those are `_`)."""
    return nodes_folder(health_file) / f"{node.replace('/', '_')}{NODE_NOTE_SUFFIX}"


def node_name(note: Path) -> str:
    """The node whose liveness note is `note`."""
    return note.name.removesuffix(NODE_NOTE_SUFFIX)


def node_notes(health_file: Path) -> list[Path]:
    """The liveness note of every node on this machine, by name."""
    return sorted(nodes_folder(health_file).glob(f"*{NODE_NOTE_SUFFIX}"))


_this_node: list[Path] = []


def note_as_node(health_file: Path, node: str) -> Path:
    """This worker's notes are node `node`'s from now on (in its pool processes too)."""
    path = node_note(health_file, node)
    path.parent.mkdir(parents=True, exist_ok=True)
    _this_node[:] = [path]
    return path


def this_node_note(health_file: Path) -> Path:
    """This worker node's liveness note; `health_file` itself outside a worker node."""
    return _this_node[0] if _this_node else health_file


def forget_this_node() -> None:
    """At a clean shutdown: this node's notes go, so the probe says unhealthy at once."""
    if _this_node:
        remove_node_notes(_this_node.pop())


def remove_node_notes(path: Path) -> None:
    """A node's liveness note and its fault notes; the folder too once no node is left."""
    for note in [path, *path.parent.glob(f"{path.name}.*")]:
        note.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # another node's notes are there, or it is gone
        path.parent.rmdir()


def remove_exited_nodes_notes(health_file: Path) -> None:
    """Notes of this machine's workers whose process is gone (killed, never shut down)."""
    for path in node_notes(health_file):
        if exited(note_fields(path)):
            remove_node_notes(path)


def note_fields(path: Path) -> dict[str, Any]:
    try:
        fields = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return fields if isinstance(fields, dict) else {}


def exited(fields: dict[str, Any]) -> bool:
    """Whether the process that wrote a note is known to be gone: it ran on this host (in this
    pid namespace, as a probe run in the worker's container is) and its pid is no more."""
    pid = fields.get("pid")
    here = fields.get("host") == socket.gethostname()
    return here and isinstance(pid, int) and not alive(pid)


def note_path(health_file: Path, kind: str) -> Path:
    """`<health file>.<kind>`: the note beside the liveness note (tests remove `<file>.*`)."""
    return health_file.with_name(f"{health_file.name}.{kind}")


def write_note(path: Path, fields: dict[str, Any]) -> None:
    """Replace the note at `path` with `fields`; OSError if it cannot be written."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)  # another node's stop removes an empty one
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
