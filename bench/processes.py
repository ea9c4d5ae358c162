"""Worker processes for the benchmark: started, waited for, stopped, and their memory sampled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

READY_DEADLINE_S = 60.0
STOP_DEADLINE_S = 60.0
# smaps_rollup walks the page tables: sampling often would steal the CPU being measured.
SAMPLE_EVERY_S = 0.5


@dataclass
class BenchWorker:
    """`celery -A <app> worker` with the given settings, logging to a file."""

    app: str
    env: dict[str, str]
    concurrency: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> BenchWorker:
        nodename = f"bench-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        argv = [
            sys.executable, "-m", "celery", "-A", self.app, "worker",
            f"--queues={self.env['ACCOUNT_RESET_QUEUE']}", f"--concurrency={self.concurrency}",
            "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            f"--hostname={nodename}",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log)  # noqa: S603
        deadline = time.monotonic() + READY_DEADLINE_S
        while " ready." not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {self.log_path}")
            time.sleep(0.05)  # the log file is the only signal; the deadline bounds the wait
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pids(self) -> list[int]:
        if self.process is None:
            return []
        main = self.process.pid
        try:
            children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
        except OSError:
            return [main]
        return [main, *map(int, children)]


@dataclass
class MemorySampler:
    """Peak memory of a worker's processes together, sampled on a thread: the sum of their
    proportional set sizes (PSS: a page shared by the main process and its forked children
    counts once, split between them), and the plain sum of their resident sets (which counts
    shared pages once per process)."""

    worker: BenchWorker
    peak_bytes: int = 0
    peak_rss_sum: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            pids = self.worker.pids()
            self.peak_bytes = max(self.peak_bytes, sum(_kb(p, "Pss:") for p in pids) * 1024)
            self.peak_rss_sum = max(self.peak_rss_sum, sum(_kb(p, "Rss:") for p in pids) * 1024)


def _kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
