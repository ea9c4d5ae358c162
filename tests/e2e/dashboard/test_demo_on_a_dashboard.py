"""`make demo DEMO_DATABASE_URL=...`: the demo on a dashboard's own database, as a user tries it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.e2e.dashboard.driver import Dashboard, dashboard_storage_env
from tests.support.ids import unique
from tests.support.keys import TEST_BCRYPT_ROUNDS
from tests.support.probes import CLI


def test_the_demo_runs_twice_on_a_stock_dashboards_database_and_leaves_its_users_alone(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'dashboard.sqlite'}"
    appid = unique("demo").replace("-", "_")
    dashboard = Dashboard({"APPID": appid, **dashboard_storage_env(url)})
    try:
        username, password = unique("user"), unique("password")
        dashboard.call("create-user", username=username, password=password)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
        env.update(
            ACCOUNT_RESET_HASH_MODE="unkeyed",
            ACCOUNT_RESET_APPID=appid,
            ACCOUNT_RESET_BCRYPT_ROUNDS=str(TEST_BCRYPT_ROUNDS),
        )
        for _ in range(2):  # the demo's own usernames never collide with an earlier run's
            result = subprocess.run(
                [CLI, "demo", "--database-url", url],
                env=env, capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
            assert "All 15 scenarios gave the expected outcome." in result.stdout
        assert dashboard.call("sign-in", username=username, password=password)["signedIn"]
    finally:
        dashboard.close()
