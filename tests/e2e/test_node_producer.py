"""The README's Node producer (examples/node-producer): a plain Redis client, no Celery library,
sealing the secrets itself with `jose` (a JWE to the worker's public key, bound to the command,
the field and the command_id), gets its event from a real worker.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.support.ids import unique
from tests.support.keys import TEST_SEALING_KEYS
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess

EXAMPLE = Path(__file__).parents[2] / "examples" / "node-producer"
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def node_producer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with its two dependencies (redis, jose) installed from the npm registry, as
    its package-lock.json pins them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node, "node is needed to test the Node producer"
    assert npm, "npm is needed to install its Redis client"
    directory = tmp_path_factory.mktemp("node-producer")
    for path in [EXAMPLE / "package.json", EXAMPLE / "package-lock.json", *EXAMPLE.glob("*.mjs")]:
        shutil.copy(path, directory / path.name)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory, check=True, capture_output=True, timeout=DEADLINE_S,
    )  # fmt: skip
    return directory


def run_node(
    directory: Path, env: dict[str, str], *args: str, stdin: str = "", check: bool = True
) -> dict[str, object]:
    done = subprocess.run(
        ["node", "enqueue.mjs", *args], cwd=directory, env=env, input=stdin,
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    if not check:
        return {"returncode": done.returncode, "stderr": done.stderr}
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_node_producer_ends_sessions_and_resets_a_password_with_sealed_secrets(
    node_producer: Path, running_worker: WorkerProcess, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    password = unique("node-password")[:40]

    ended = run_node(
        node_producer, running_worker.env, "reset-session-key",
        json.dumps({"accountid": user.accountid, "requester_accountid": user.accountid}),
    )  # fmt: skip
    reset = run_node(
        node_producer, running_worker.env, "reset-account-password",
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


def test_the_node_producer_seals_each_secret_bound_to_its_command_field_and_command_id(
    node_producer: Path, running_worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    """What Node leaves in the broker, read back from a queue no worker consumes: JWE tokens
    only, whose protected headers bind them, which the worker's keys open; and a Node producer
    given only the legacy shared key refuses to send rather than send plaintext."""
    queue = unique("account-reset-test-unconsumed")
    env = {**running_worker.env, "ACCOUNT_RESET_QUEUE": queue, "WAIT_SECONDS": "0"}
    secret = unique("node-secret")

    run_node(
        node_producer, env, "reset-account-password", json.dumps({"username": secret}),
        stdin=f"{secret}\n{secret}\n", check=False,
    )  # fmt: skip
    legacy_env = {k: v for k, v in env.items() if k != "ACCOUNT_RESET_SEALING_PUBLIC_KEY"}
    legacy = run_node(
        node_producer, legacy_env, "reset-account-password", json.dumps({"username": secret}),
        stdin=f"{secret}\n{secret}\n", check=False,
    )  # fmt: skip
    try:
        [entry] = redis_client.lrange(queue, 0, -1)
    finally:
        redis_client.delete(queue)

    assert secret.encode() not in entry
    envelope = json.loads(entry)
    kwargs = json.loads(base64.b64decode(envelope["body"]))[1]
    for field in ("username", "secret-code", "new-password"):
        token = kwargs[field]["sealed"]
        opened = TEST_SEALING_KEYS.open(token)
        header = opened.header
        assert (header["alg"], header["enc"]) == ("ECDH-ES", "A256GCM")
        assert (header["cmd"], header["fld"], header["cid"]) == (
            "reset-account-password", field, kwargs["command_id"],
        )  # fmt: skip
        assert abs(header["iat"] - time.time()) < 60
        assert opened.text == secret
    assert legacy["returncode"] == 2
    assert "ACCOUNT_RESET_SEALING_PUBLIC_KEY" in str(legacy["stderr"])
