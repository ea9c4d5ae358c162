"""The dashboard is installed before the first test runs, not inside it.

On a fresh machine `npm ci` downloads the dashboard and may build sqlite3 from source: minutes on
a small machine, which inside a test would count against its timeout (issue 16, finding 12).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.dashboard.driver import installed_modules, is_installed

HERE = Path(__file__).parent


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(item.path.is_relative_to(HERE) for item in session.items):
        return
    if not is_installed():
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("installing the dashboard from npm (first run on this machine)")
    installed_modules()
