"""Issue 16, finding 13: the "Redis-only" client installed Celery's worker side, Flower,
SQLAlchemy and psycopg, every dependency of the worker.

The project is installed by real pip, as a producer would (`pip install
'account-reset-worker[client]'`), into a new virtual environment of this module's own, from a
copy of its sources (pip builds in the source folder). Resolved from the package index, with
pip's cache: about 15 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.ids import unique
from tests.support.workers import clean_env

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "client", "schemas", "tasks", "worker")
INSTALL_DEADLINE_S = 240.0
DEADLINE_S = 60.0
# The worker extra's modules, and Flower's: none of them in a producer's installation.
WORKER_ONLY = (
    "sqlalchemy", "psycopg", "pymysql", "alembic", "bcrypt", "prometheus_client",
    "pythonjsonlogger", "flower", "tornado",
)  # fmt: skip


@pytest.fixture(scope="module")
def client_bin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The `bin` folder of a new virtual environment holding the client form alone."""
    root = tmp_path_factory.mktemp("client-only")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(ROOT / name, source / name, ignore=ignored)
        else:
            shutil.copy2(ROOT / name, source / name)
    venv = root / "venv"
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)],
            check=True, timeout=DEADLINE_S,
        )  # fmt: skip
        # This environment's pip installs into the new one (which then has no pip of its own).
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
             "--quiet", f"{source}[client]"],
            capture_output=True, text=True, timeout=INSTALL_DEADLINE_S,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr[-3000:]
        yield venv / "bin"
    finally:
        shutil.rmtree(root)


def run(
    bin_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], env=env or clean_env(),
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip


def test_finding_13_the_client_installs_without_the_workers_dependencies(
    client_bin: Path,
) -> None:
    """Finding 13: `pip install 'account-reset-worker[client]'` brought SQLAlchemy, psycopg,
    PyMySQL, Alembic, bcrypt, prometheus-client and Flower; now none of them, and the client
    imports."""
    found = run(
        client_bin, "python", "-c",
        "import importlib.util, sys;"
        " print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))",
        *WORKER_ONLY,
    )  # fmt: skip
    assert (found.returncode, found.stdout.split()) == (0, []), found.stderr
    imported = run(
        client_bin, "python", "-c", "from client import AccountResetClient, ClientSettings"
    )
    assert imported.returncode == 0, imported.stderr


@pytest.mark.parametrize(
    "command", [("enqueue", "--help"), ("events", "tail", "--help"), ("schema",)]
)
def test_finding_13_a_client_only_console_script_runs_the_producers_commands(
    client_bin: Path, command: tuple[str, ...]
) -> None:
    done = run(client_bin, "account-reset", *command)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    if command == ("schema",):
        assert set(json.loads(done.stdout)) >= {"reset-session-key", "reset-account-password"}
    else:
        assert done.stdout.startswith(f"Usage: account-reset {' '.join(command[:-1])}")


def test_finding_13_a_client_only_installation_enqueues(
    client_bin: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    """The client-only `account-reset enqueue` sends a command a worker takes: one message on
    the queue, for the task named, carrying the command_id it printed."""
    queue = unique("client-only-queue")
    try:
        sent = run(
            client_bin, "account-reset", "enqueue", "reset-session-key", "--accountid", "acct_1",
            env=clean_env(ACCOUNT_RESET_BROKER_URL=redis_url, ACCOUNT_RESET_QUEUE=queue),
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        messages = redis_client.lrange(queue, 0, -1)
        assert len(messages) == 1
        headers = json.loads(messages[0])["headers"]
        assert (headers["task"], headers["id"]) == ("reset-session-key", sent.stdout.strip())
    finally:
        redis_client.delete(queue)


@pytest.mark.parametrize("command", [("worker",), ("db", "upgrade"), ("failed", "list")])
def test_finding_13_the_workers_commands_say_what_to_install(
    client_bin: Path, command: tuple[str, ...]
) -> None:
    """On the client alone, a worker's command is one line naming the extra to install (it was
    a 30-line ModuleNotFoundError traceback)."""
    refused = run(client_bin, "account-reset", *command)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(f"Error: `account-reset {command[0]}` needs the worker's")
    assert "sqlalchemy" in refused.stderr
    assert refused.stderr.endswith("pip install 'account-reset-worker[worker]'\n")
