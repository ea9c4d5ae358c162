"""Worker processes for the demo, the benchmark and the tests: started, waited for, stopped.

A worker is `account-reset worker` (`python -m worker worker`: Celery's worker command alone,
worker/ops/cli.py) on its own queue, or `celery -A <app> worker` for another app, with every
line it logs in a file of its own: the log is where it says that it is ready, and what a failed
run is read from.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

STOP_DEADLINE_S = 60.0
READY_DEADLINE_S = 60.0
# Celery's line once the worker consumes: "celery@host ready."
READY_LINE = " ready."


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nodename(prefix: str) -> str:
    """A Celery node name no other worker on this machine has."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@{socket.gethostname()}"


@dataclass
class WorkerProcess:
    """`account-reset worker` (another app: `celery -A <app> worker`) with the settings in `env`,
    logging to `log_path`.

    It consumes the queue `env` names: ACCOUNT_RESET_SESSIONS_QUEUE on a sessions node (what
    `account-reset worker --sessions` does), else ACCOUNT_RESET_QUEUE.
    """

    env: dict[str, str]
    log_path: Path
    app: str = "worker"
    loglevel: str = "INFO"
    nodename: str = field(default_factory=lambda: nodename("worker"))
    argv: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def queue(self) -> str:
        sessions = self.env.get("ACCOUNT_RESET_NODE_ROLE") == "sessions"
        return self.env["ACCOUNT_RESET_SESSIONS_QUEUE" if sessions else "ACCOUNT_RESET_QUEUE"]

    def start(self, *options: str) -> WorkerProcess:
        """Start it (`options` go to `celery worker`); the log is appended to, not replaced."""
        # The worker as `account-reset worker` starts it: Celery's `celery` command would load
        # every installed plugin (Flower, tornado) into it. Any other app (the benchmark's
        # no-op) with `celery`.
        command = ["worker"] if self.app == "worker" else ["celery", "-A", self.app]
        self.argv = [
            sys.executable, "-m", *command, "worker",
            f"--queues={self.queue}", f"--hostname={self.nodename}",
            f"--loglevel={self.loglevel}", "--without-gossip", "--without-mingle",
            *options,
        ]  # fmt: skip
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(  # noqa: S603
                self.argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        return self

    def wait_until_ready(self, timeout_s: float = READY_DEADLINE_S) -> WorkerProcess:
        """Until Celery logs that the worker consumes; RuntimeError if it exits or is late."""
        deadline = time.monotonic() + timeout_s
        while READY_LINE not in self.log():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"worker exited at startup; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready after {timeout_s}s; see {self.log_path}")
            time.sleep(0.05)  # the log file is the only signal; the deadline bounds the wait
        return self

    def stop(self, timeout_s: float = STOP_DEADLINE_S) -> int:
        """Warm shutdown (SIGTERM); killed if it has not exited by the deadline. Its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout_s: float = 60.0, *, count: int = 1) -> str:
        """The `count`-th match of `pattern` in the log, once the worker has written it."""
        deadline = time.monotonic() + timeout_s
        while len(found := re.findall(pattern, self.log())) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} not {count}x in the worker log after {timeout_s}s")
            time.sleep(0.05)  # a file has no change notification here; the deadline bounds it
        return str(found[count - 1])

    def pids(self) -> list[int]:
        """The main process and its pool's processes."""
        if self.process is None:
            return []
        main = self.process.pid
        try:
            children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
        except OSError:
            return [main]
        return [main, *map(int, children)]
