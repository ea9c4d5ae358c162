"""The benchmark's worker processes (worker/dev/processes.py): their memory, sampled."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from worker.dev.processes import WorkerProcess

# smaps_rollup walks the page tables: sampling often would steal the CPU being measured.
SAMPLE_EVERY_S = 0.5


@dataclass
class MemorySampler:
    """Peak memory of a worker's processes together, sampled on a thread: the sum of their
    proportional set sizes (PSS: a page shared by the main process and its forked children
    counts once, split between them), and the plain sum of their resident sets (which counts
    shared pages once per process)."""

    worker: WorkerProcess
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
