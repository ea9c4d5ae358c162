"""No Flower and no tornado in a worker: `account-reset worker` runs Celery's worker command
alone (worker/ops/cli.py), while Celery's command group imports every installed
`celery.commands` plugin, Flower's among them.

The worker is `account-reset worker` itself (its console script's two lines), with two hooks
that write a process's `sys.modules` to a file: in the pool process after it ran a command, and
in the main process when it shuts down.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

import redis

from client.events import wait_for_outcomes
from client.raw_message import raw_protocol2_message, task_id_of
from tests.support.ids import unique
from tests.support.workers import worker_env
from worker.dev.processes import nodename

DEADLINE_S = 60.0
NOT_IN_A_WORKER = ("flower", "tornado")
# `account-reset worker ARGS`, as its console script runs it, plus the hooks.
WORKER_WITH_HOOKS = """
import json, os, sys
from celery.signals import task_postrun, worker_shutdown

def modules(where):
    path = os.path.join(os.environ["MODULES_DIR"], f"{where}-{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump(sorted(sys.modules), out)

task_postrun.connect(lambda **_: modules("pool"), weak=False)
worker_shutdown.connect(lambda **_: modules("main"), weak=False)

from worker.ops.cli import main
sys.argv = ["account-reset", "worker", *sys.argv[1:]]
sys.exit(main())
"""


def test_celerys_command_group_would_import_flower_here() -> None:
    """The check below means something: Flower is installed, and Celery's own entry point (what
    `celery -A worker worker` and `app.worker_main` go through) imports it."""
    assert importlib.util.find_spec("flower") is not None
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, celery.bin.celery; print('flower' in sys.modules)"],
        capture_output=True, text=True, timeout=DEADLINE_S, check=True,
    )  # fmt: skip
    assert loaded.stdout.strip() == "True"


def test_the_worker_and_its_pool_import_neither_flower_nor_tornado(
    redis_url: str, database_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = {**worker_env(redis_url=redis_url, database_url=database_url)}
    env["MODULES_DIR"] = str(tmp_path)
    queue, stream = env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"]
    with (tmp_path / "worker.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER_WITH_HOOKS, f"--hostname={nodename('imports')}"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        command = raw_protocol2_message("reset-session-key", {"accountid": unique("acct")}, queue)
        redis_client.lpush(queue, command)
        answered = wait_for_outcomes(
            redis_client, stream, {task_id_of(command)}, timeout_s=DEADLINE_S
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE_S)
        redis_client.delete(queue, stream)
    assert set(answered) == {task_id_of(command)}

    dumps = {path.name.split("-")[0]: path for path in tmp_path.glob("*.json")}
    assert set(dumps) == {"main", "pool"}, (tmp_path / "worker.log").read_text()
    for where, path in dumps.items():
        loaded = set(json.loads(path.read_text()))
        assert "celery.apps.worker" in loaded, where  # a worker's modules, as the hook saw them
        unwanted = sorted(name for name in loaded if name.split(".")[0] in NOT_IN_A_WORKER)
        assert unwanted == [], where
