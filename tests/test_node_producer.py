"""The README's Node producer (examples/node-producer): a plain Redis client, no Celery library,
sealing the secrets itself, gets its event from a real worker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Seeder
from tests.support import WorkerProcess, unique

EXAMPLE = Path(__file__).parent.parent / "examples" / "node-producer"
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def node_producer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with its one dependency installed from the npm registry."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node, "node is needed to test the Node producer"
    assert npm, "npm is needed to install its Redis client"
    directory = tmp_path_factory.mktemp("node-producer")
    for name in ("package.json", "enqueue.mjs"):
        shutil.copy(EXAMPLE / name, directory / name)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory, check=True, capture_output=True, timeout=DEADLINE_S,
    )  # fmt: skip
    return directory


def run_node(
    directory: Path, worker: WorkerProcess, *args: str, stdin: str = ""
) -> dict[str, object]:
    done = subprocess.run(
        ["node", "enqueue.mjs", *args], cwd=directory, env=worker.env, input=stdin,
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_node_producer_ends_sessions_and_resets_a_password_with_sealed_secrets(
    node_producer: Path, running_worker: WorkerProcess, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    password = unique("node-password")[:40]

    ended = run_node(
        node_producer, running_worker, "reset-session-key",
        json.dumps({"accountid": user.accountid, "requester_accountid": user.accountid}),
    )  # fmt: skip
    reset = run_node(
        node_producer, running_worker, "reset-account-password",
        json.dumps({"username": user.username}), stdin=f"{code}\n{password}\n",
    )  # fmt: skip

    print(
        f"\nfrom Node: {ended['command']} {ended['status']}, {reset['command']} {reset['status']}"
    )
    assert (ended["status"], reset["status"]) == ("success", "success")
    account = seeder.load(user.accountid)
    assert account.session_key_number == 3
    assert seeder.hasher.password_matches(password, account.password_hash or "")
    assert password not in running_worker.log()
