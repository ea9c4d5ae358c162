"""Flower (`celery -A worker flower`) beside a test's worker, with its API open to the test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from worker.dev.processes import free_port


def start_flower(env: Mapping[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Flower on a free port of 127.0.0.1 with a worker's settings; its process and its URL."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
             "--address=127.0.0.1"],
            env={**env, "FLOWER_UNAUTHENTICATED_API": "true"}, stdout=log, stderr=log,
        )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"
