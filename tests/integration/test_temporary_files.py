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


def test_a_session_with_its_embedded_redis_leaves_no_folder(tmp_path: Path) -> None:
    """Finding 11 (issue 16): tests left an empty temp folder: a session with no
    ACCOUNT_RESET_TEST_REDIS_URL (a newcomer's `make test`) started its embedded Redis in a
    folder of its own, and never removed it. Only pytest's own `pytest-of-<user>` stays."""
    session = subprocess.run(
        [sys.executable, "-m", "pytest", A_REDIS_TEST, "-q", "-p", "no:cacheprovider"],
        env=clean_env(TMPDIR=str(tmp_path)), cwd=REPOSITORY, capture_output=True, text=True,
        timeout=DEADLINE_S,
    )  # fmt: skip
    assert session.returncode == 0, session.stdout + session.stderr
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("pytest-of-")] == []
