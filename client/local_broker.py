"""Which Redis a command talks to when no ACCOUNT_RESET_BROKER_URL is set (development).

A worker started without a broker URL runs an embedded Redis on a free port and records its
URL in a file of this user's (`runtime_file`); every other command without a URL reads that
file, and uses the recorded Redis while the worker that recorded it is alive, else the
default `redis://127.0.0.1:6379/0`. Each says on stderr which one it chose (`FoundBroker.said`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

BROKER_URL_VARIABLE = "ACCOUNT_RESET_BROKER_URL"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
RECORD_NAME = "embedded-redis.json"


def runtime_file() -> Path:
    """This user's record of the running embedded Redis: under $XDG_RUNTIME_DIR (a per-user,
    memory-backed folder that ends with the session), else ~/.cache."""
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    return Path(base) / "account-reset" / RECORD_NAME


def record(url: str, *, pid: int) -> Path:
    """Note that worker `pid` serves an embedded Redis at `url` (readable by this user only)."""
    path = runtime_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{pid}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"url": url, "pid": pid}, out)
    partial.replace(path)
    return path


def forget(*, pid: int) -> None:
    """Remove the record if worker `pid` wrote it (a later worker's record stays)."""
    path = runtime_file()
    recorded = _recorded(path)
    if recorded is not None and recorded[1] == pid:
        path.unlink(missing_ok=True)


def _recorded(path: Path) -> tuple[str, int] | None:
    try:
        note = json.loads(path.read_text(encoding="utf-8"))
        return str(note["url"]), int(note["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def alive(pid: int) -> bool:
    """Whether a process `pid` exists in this pid namespace."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return pid > 0


@dataclass(frozen=True)
class FoundBroker:
    url: str
    said: str


def found_broker() -> FoundBroker:
    """The live embedded Redis this user's worker recorded, else the default Redis."""
    recorded = _recorded(runtime_file())
    if recorded is not None and alive(recorded[1]):
        url, pid = recorded
        return FoundBroker(
            url, f"no {BROKER_URL_VARIABLE}: using the embedded Redis of worker pid {pid} at {url}"
        )
    return FoundBroker(
        DEFAULT_BROKER_URL, f"no {BROKER_URL_VARIABLE}: using {DEFAULT_BROKER_URL} (default)"
    )


def broker_url_is_set() -> bool:
    return bool(os.environ.get(BROKER_URL_VARIABLE, "").strip())
