"""Issue 16, finding 3: `accounts create` and `reset-codes create` beside the real dashboard.

An account and codes made by the console script on a dashboard's database are asked about by
the dashboard's own API: it signs the account in with the password given, reads it as the
appid's owner, counts its code, takes a code from `--code-from-stdin` in its own reset, and
signs in with the password a real worker set from the generated code. On a stock dashboard
(SQLite, no key) and on one whose application sets a key (PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.dashboard.driver import Dashboard, dashboard_storage_env
from tests.support import databases
from tests.support.ids import unique
from tests.support.keys import TEST_HASH_KEY
from tests.support.probes import run_cli
from tests.support.workers import WorkerProcess, worker_env
from worker.db.migrate import upgrade


@dataclass
class Stack:
    dashboard: Dashboard
    worker: WorkerProcess

    def sign_in(self, username: str, password: str) -> dict[str, object]:
        return self.dashboard.call("sign-in", username=username, password=password)


@pytest.fixture(params=[("sqlite", "unkeyed"), ("postgresql", "keyed")], ids="-".join)
def stack(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    backend, keys = request.param
    appid = unique("dash").replace("-", "_")
    with databases.backend_database(backend, tmp_path) as database_url:
        dashboard_env = {"APPID": appid, **dashboard_storage_env(database_url)}
        env = worker_env(redis_url=redis_url, database_url=database_url, ACCOUNT_RESET_APPID=appid)
        if keys == "keyed":
            dashboard_env["DASHBOARD_ENCRYPTION_KEY"] = TEST_HASH_KEY
        else:
            del env["ACCOUNT_RESET_HASH_KEY"]
            env["ACCOUNT_RESET_HASH_MODE"] = "unkeyed"
        dashboard = Dashboard(dashboard_env)  # it makes its tables
        upgrade(database_url, appid=appid)
        worker = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
        try:
            yield Stack(dashboard, worker)
        finally:
            worker.stop()
            worker.remove_keys(redis_url)
            dashboard.close()


def test_finding_3_what_the_cli_makes_the_dashboard_signs_in_counts_and_resets_with(
    stack: Stack,
) -> None:
    env = stack.worker.env
    username, password = unique("user"), unique("password")[:40]
    created = run_cli(env, "accounts", "create", stdin=f"{username}\n{password}\n")
    accountid = created.stdout.strip()

    assert stack.sign_in(username, password)["signedIn"]
    dates = stack.dashboard.call("account", accountid=accountid)["dates"]
    assert dates["ownerSince"], dates
    assert dates["administratorSince"], dates
    assert "its owner" in created.stderr

    code = run_cli(env, "reset-codes", "create", "--accountid", accountid).stdout.strip()
    assert stack.dashboard.call("reset-codes-count", accountid=accountid)["count"] == 1
    assert stack.dashboard.call("account", accountid=accountid)["dates"]["resetCodeLastCreatedAt"]
    reset = run_cli(
        env, "enqueue", "reset-account-password", "--wait", "30",
        stdin=f"{username}\n{code}\nset-by-the-worker\n",
    )  # fmt: skip
    assert reset.stdout.splitlines()[-1] == "outcomes: success 1"
    assert stack.sign_in(username, "set-by-the-worker")["signedIn"]
    assert stack.sign_in(username, password) == {"signedIn": False, "error": "invalid-password"}

    chosen = unique("code").replace("-", "")
    run_cli(
        env, "reset-codes", "create", "--accountid", accountid, "--code-from-stdin",
        stdin=f"{chosen}\n",
    )  # fmt: skip
    reply = stack.dashboard.call(
        "reset-account-password", username=username, code=chosen, password="set-by-the-dashboard"
    )
    assert reply == {"ok": True}
    assert stack.sign_in(username, "set-by-the-dashboard")["signedIn"]
