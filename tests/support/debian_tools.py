"""Tools from Debian's packages, unpacked without installing them and kept between runs in
~/.cache/account-reset-tests: promtool (package `prometheus`) and docker-compose (its Python
code and libraries, run by the system's Python 3).

`apt-get download` fetches the packages (no root needed); `dpkg-deb -x` unpacks them into a
folder that is renamed into the cache once complete, so two runs never see half of one. Where
they cannot be fetched, the test skips, or fails under ACCOUNT_RESET_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.databases import REQUIRE_SERVICES

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "account-reset-tests"
PROMETHEUS = ("prometheus",)
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
    """The root folder of `packages` unpacked together, fetched on first use."""
    root = CACHE / name
    if root.is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=f".{name}-") as work:
        _download(packages, Path(work))
        staging = Path(work) / "root"
        for package in sorted(Path(work).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(package), str(staging)], check=True)
        try:
            staging.rename(root)
        except OSError:  # another run unpacked it first
            shutil.rmtree(staging, ignore_errors=True)
    return root


def _download(packages: tuple[str, ...], folder: Path) -> None:
    """`apt-get download`; on a machine whose package lists were never fetched, as root, after
    `apt-get update`."""
    attempts = [["apt-get", "download", *packages]]
    if os.geteuid() == 0:
        attempts.append(
            ["sh", "-c", f"apt-get update -qq && apt-get download {' '.join(packages)}"]
        )
    failure = ""
    for command in attempts:
        try:
            subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=300)
            return
        except subprocess.CalledProcessError as failed:
            failure = failed.stderr.decode(errors="replace").strip()
        except (OSError, subprocess.SubprocessError) as failed:
            failure = str(failed)
    _unavailable(f"cannot fetch Debian's {', '.join(packages)}: {failure}")


def promtool() -> Path:
    return unpacked("prometheus", PROMETHEUS) / "usr/bin/promtool"


def prometheus_server() -> Path:
    return unpacked("prometheus", PROMETHEUS) / "usr/bin/prometheus"


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


def _unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(reason)
    pytest.skip(reason)
