"""Which Redis a command without a broker URL uses (client/local_broker.py; the real worker and
console script: tests/e2e/test_worker_processes.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client import local_broker

URL = "redis://127.0.0.1:41234/0"


@pytest.fixture(autouse=True)
def own_runtime_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path


def a_gone_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def test_finding_1_a_live_workers_record_is_used_and_said() -> None:
    path = local_broker.record(URL, pid=1)  # pid 1 lives as long as the machine
    found = local_broker.found_broker()
    assert path.stat().st_mode & 0o777 == 0o600
    assert found.url == URL
    assert found.said == (
        f"no ACCOUNT_RESET_BROKER_URL: using the embedded Redis of worker pid 1 at {URL}"
    )


def test_finding_1_a_killed_workers_record_is_ignored_for_the_default() -> None:
    local_broker.record(URL, pid=a_gone_pid())
    found = local_broker.found_broker()
    assert found.url == "redis://127.0.0.1:6379/0"
    assert found.said.endswith("using redis://127.0.0.1:6379/0 (default)")


def test_finding_1_a_worker_removes_its_own_record_only() -> None:
    path = local_broker.record(URL, pid=1)
    local_broker.forget(pid=2)
    assert path.exists(), "a later worker's record stays"
    local_broker.forget(pid=1)
    assert not path.exists()
