"""Tools from Debian's packages for the tests (worker/dev/debian_tools.py fetches and unpacks
them): promtool, Prometheus and docker-compose (its Python code and libraries, run by the
system's Python 3). Where they cannot be fetched, the test skips, or fails under
ACCOUNT_RESET_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.servers import SERVERS
from worker.dev import debian_tools
from worker.dev.debian_tools import DebianToolUnavailable

# docker-compose 1.29 (Debian 12) and the libraries it imports that the system's Python lacks.
DOCKER_COMPOSE = (
    "docker-compose", "python3-cached-property", "python3-distro", "python3-docker",
    "python3-dockerpty", "python3-docopt", "python3-dotenv", "python3-jsonschema",
    "python3-requests", "python3-texttable", "python3-websocket", "python3-yaml",
    "python3-urllib3", "python3-certifi", "python3-chardet", "python3-charset-normalizer",
    "python3-idna", "python3-attr", "python3-pyrsistent", "python3-six",
)  # fmt: skip
SYSTEM_PYTHON = Path("/usr/bin/python3")


def unpacked(name: str, packages: tuple[str, ...]) -> Path:
    try:
        return debian_tools.unpacked(name, packages)
    except DebianToolUnavailable as missing:
        _unavailable(str(missing))


def promtool() -> Path:
    return unpacked("prometheus", debian_tools.PROMETHEUS) / "usr/bin/promtool"


def prometheus_server() -> Path:
    return unpacked("prometheus", debian_tools.PROMETHEUS) / "usr/bin/prometheus"


def docker_compose_command() -> list[str]:
    """docker-compose from Debian, on the system's Python 3 with its libraries beside it."""
    if not SYSTEM_PYTHON.exists():
        _unavailable(f"docker-compose needs Debian's Python 3 at {SYSTEM_PYTHON}")
    root = unpacked("docker-compose", DOCKER_COMPOSE)
    return [str(SYSTEM_PYTHON), "-c", _RUN_COMPOSE, str(root / "usr/lib/python3/dist-packages")]


# The libraries first on the path, then docker-compose's own entry point.
_RUN_COMPOSE = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'docker-compose';"
    " from compose.cli.main import main; sys.exit(main())"
)


def _unavailable(reason: str) -> NoReturn:
    if SERVERS.require:
        pytest.fail(reason)
    pytest.skip(reason)
