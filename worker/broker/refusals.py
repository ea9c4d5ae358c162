"""Redis refusing commands for a while: told apart from real errors, counted, and noted.

A Redis that is full (`maxmemory` with `noeviction`), a replica (`READONLY`), loading its data
set (`LOADING`), running a long script (`BUSY`), without its master (`MASTERDOWN`), failing to
save (`MISCONF`) or short of replicas (`NOREPLICAS`) answers with an error, not a dropped
connection: kombu and the worker treated that as a bug and stopped ("Unrecoverable error:
OutOfMemoryError"). Each of these passes when the server recovers, so each is a transient fault:
retried with backoff, counted in `account_reset_redis_refusals_total{error=...}`, and noted
next to the health file so that `account-reset health` reports it while it lasts.

Only the error's kind is ever kept or logged: redis-py puts a pipeline command's arguments in
its message ("Command # 2 (HSET ... <the raw message>) of pipeline caused error: OOM ..."), and
those may be a command's sealed fields.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis

from worker.ops.health_notes import ThrottledNote, fresh_note, note_path

log = logging.getLogger(__name__)

# The reply's first word, as Redis sends it, and the metric label it is counted under.
REFUSAL_KINDS: dict[str, str] = {
    "OOM": "oom",
    "READONLY": "readonly",
    "LOADING": "loading",
    "BUSY": "busy",
    "MASTERDOWN": "masterdown",
    "TRYAGAIN": "tryagain",
    "CLUSTERDOWN": "clusterdown",
    "MISCONF": "misconf",
    "NOREPLICAS": "noreplicas",
}
# What `account-reset health` says for each kind.
REFUSAL_WORDS: dict[str, str] = {
    "oom": "Redis refuses writes (OOM)",
    "readonly": "Redis refuses writes (READONLY: a replica)",
    "loading": "Redis refuses commands (LOADING its data set)",
    "busy": "Redis refuses commands (BUSY running a script)",
    "masterdown": "Redis refuses commands (MASTERDOWN)",
    "tryagain": "Redis refuses commands (TRYAGAIN)",
    "clusterdown": "Redis refuses commands (CLUSTERDOWN)",
    "misconf": "Redis refuses writes (MISCONF: it cannot save)",
    "noreplicas": "Redis refuses writes (NOREPLICAS)",
}
_CLASS_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "oom"),
    (redis.exceptions.ReadOnlyError, "readonly"),
    (redis.exceptions.BusyLoadingError, "loading"),
    (redis.exceptions.MasterDownError, "masterdown"),  # before ClusterDownError, its base
    (redis.exceptions.TryAgainError, "tryagain"),
    (redis.exceptions.ClusterDownError, "clusterdown"),
)
_PIPELINE_PREFIX = "caused error: "
# A note older than this is a refusal that has passed: each refusal renews it, and a worker
# that is refused retries (and is refused again) well within this.
NOTE_FRESH_S = 10.0
# Each process rewrites the note at most this often while refusals go on.
NOTE_EVERY_S = 1.0


def refusal_kind(exc: BaseException) -> str | None:
    """The kind of refusal `exc` is (`oom`, `readonly`, ...), or None for any other error."""
    for cls, kind in _CLASS_KINDS:
        if isinstance(exc, cls):
            return kind
    if not isinstance(exc, redis.ResponseError):
        return None
    text = str(exc.args[0]) if exc.args else ""
    if _PIPELINE_PREFIX in text:  # redis-py's note on an error inside a pipeline
        text = text.split(_PIPELINE_PREFIX, 1)[1]
    return REFUSAL_KINDS.get(text.split(" ", 1)[0].upper())


def is_refusal(exc: BaseException) -> bool:
    return refusal_kind(exc) is not None


def refusal_note_path(health_file: Path) -> Path:
    return note_path(health_file, "redis-refused")


_notes = ThrottledNote("Redis refusal", every_s=NOTE_EVERY_S)


def note_refusal(kind: str, *, where: str) -> None:
    """Count a refusal, and note it for the health probe (at most once a second a process)."""
    from worker import bootstrap

    bootstrap.observer().refused_by_redis(error=kind)
    path = refusal_note_path(bootstrap.health_file())
    if _notes.write(path, kind, {"error": kind}):
        log.warning("Redis refused %s (%s): will try again", where, kind)


def current_refusal(health_file: Path, *, now: float | None = None) -> str | None:
    """What the health probe says of a refusal noted within NOTE_FRESH_S, else None."""
    note = fresh_note(refusal_note_path(health_file), fresh_s=NOTE_FRESH_S, now=now)
    if note is None or "error" not in note:
        return None
    kind = str(note["error"])
    return REFUSAL_WORDS.get(kind, f"Redis refuses commands ({kind})")
