"""Tools from Debian's packages, unpacked without installing them and kept between runs in
~/.cache/account-reset-tests: Prometheus and promtool (package `prometheus`) and docker-compose
(its Python code and libraries, run by the system's Python 3), for the tests and for
`make dashboard-png`.

`apt-get download` fetches the packages (no root needed); `dpkg-deb -x` unpacks them into a
folder that is renamed into the cache once complete, so two runs never see half of one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "account-reset-tests"
PROMETHEUS = ("prometheus",)
FETCH_DEADLINE_S = 300


class DebianToolUnavailable(RuntimeError):
    """The packages could not be fetched (no apt, no network, no package lists)."""


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
            subprocess.run(  # noqa: S603
                ["dpkg-deb", "-x", str(package), str(staging)],  # noqa: S607
                check=True,
            )
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
            subprocess.run(  # noqa: S603
                command, cwd=folder, check=True, capture_output=True, timeout=FETCH_DEADLINE_S
            )
            return
        except subprocess.CalledProcessError as failed:
            failure = failed.stderr.decode(errors="replace").strip()
        except (OSError, subprocess.SubprocessError) as failed:
            failure = str(failed)
    raise DebianToolUnavailable(f"cannot fetch Debian's {', '.join(packages)}: {failure}")


def promtool() -> Path:
    return unpacked("prometheus", PROMETHEUS) / "usr/bin/promtool"


def prometheus_server() -> Path:
    return unpacked("prometheus", PROMETHEUS) / "usr/bin/prometheus"
