"""A test session cleans up after itself: nothing of it is left in the temporary directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.workers import clean_env

DEADLINE_S = 120.0
REPOSITORY = Path(__file__).parents[2]
# A test that needs Redis and writes to it, quick.
A_REDIS_TEST = (
    "tests/integration/test_cli_output.py::test_failed_list_is_a_row_a_letter_where_it_fits"
)
# A unit test that writes files into its tmp_path, quick.
A_TMP_PATH_TEST = (
    "tests/unit/test_settings.py::"
    "test_finding_10_every_password_and_key_compose_passes_comes_from_a_file"
)
# A test that kills a worker and its pool with SIGKILL, quick.
A_WORKER_KILLING_TEST = (
    "tests/e2e/test_worker_processes.py::"
    "test_finding_8_two_workers_on_one_host_have_their_own_name_and_note_and_stopping_shows_at_once"
)


def test_a_session_with_its_embedded_redis_leaves_no_folder(tmp_path: Path) -> None:
    """Finding 11 (issue 16): tests left an empty temp folder: a session with no
    ACCOUNT_RESET_TEST_REDIS_URL (a newcomer's `make test`) started its embedded Redis in a
    folder of its own, and never removed it. Only pytest's own `pytest-of-<user>` stays."""
    assert left_in(tmp_path, after_session=A_REDIS_TEST, **clean_env()) == []


def test_a_session_that_kills_a_worker_leaves_no_folder(redis_url: str, tmp_path: Path) -> None:
    """A CI run left 94 empty `pymp-*` folders in /tmp: the folder of a worker's prefork pool,
    which a worker killed with SIGKILL (as the fault and delivery tests do) never removes."""
    env = clean_env(ACCOUNT_RESET_TEST_REDIS_URL=redis_url)
    assert left_in(tmp_path, after_session=A_WORKER_KILLING_TEST, **env) == []


def test_a_passing_session_leaves_no_tmp_path_folders(tmp_path: Path) -> None:
    """A green CI run left 37 MB in /tmp/pytest-of-root: pytest keeps every test's `tmp_path`
    of the last three sessions by default (165 test folders, 32 MB, from `make test` alone).
    A session that passes now removes its own; a failing one keeps them to be read."""
    assert left_in(tmp_path, after_session=A_TMP_PATH_TEST, **clean_env()) == []
    assert [p.name for p in pytest_folders(tmp_path)] == []


def pytest_folders(tmp_path: Path) -> list[Path]:
    """The `pytest-N` folders in `pytest-of-<user>` under `tmp_path` (pytest's own root and its
    `pytest-current` link aside)."""
    return [
        folder for root in tmp_path.glob("pytest-of-*") for folder in root.glob("pytest-[0-9]*")
    ]


def left_in(tmp_path: Path, *, after_session: str, **env: str) -> list[str]:
    """What a pytest session of the test `after_session` leaves in its temporary directory,
    `tmp_path`, besides pytest's own `pytest-of-<user>`."""
    session = subprocess.run(
        [sys.executable, "-m", "pytest", after_session, "-q", "-p", "no:cacheprovider"],
        env={**env, "TMPDIR": str(tmp_path)}, cwd=REPOSITORY, capture_output=True, text=True,
        timeout=DEADLINE_S,
    )  # fmt: skip
    assert session.returncode == 0, session.stdout + session.stderr
    return [p.name for p in tmp_path.iterdir() if not p.name.startswith("pytest-of-")]
