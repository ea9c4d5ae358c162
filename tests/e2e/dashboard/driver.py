"""The real `@layeredapps/dashboard`, installed from npm and driven in a Node process.

`node/package-lock.json` pins the dashboard (0.0.150) and everything under it. The install is
cached per lock file under `~/.cache/account-reset-worker/` (or `$XDG_CACHE_HOME`), so only the
first run on a machine downloads it; concurrent test runs wait for one another's install.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

NODE_DIR = Path(__file__).parent / "node"
INSTALL_TIMEOUT_S = 600
REPLY_TIMEOUT_S = 60.0


class DashboardError(RuntimeError):
    """The dashboard's API threw: its error message, e.g. `invalid-password`."""


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "account-reset-worker"


def _target() -> Path:
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    return _cache() / f"dashboard-{hashlib.sha256(lock).hexdigest()[:16]}"


def is_installed() -> bool:
    return (_target() / "node_modules" / "@layeredapps" / "dashboard").is_dir()


def installed_modules() -> Path:
    """`node_modules` for the pinned lock file, installed once per machine."""
    _cache().mkdir(parents=True, exist_ok=True)
    with (_cache() / "dashboard.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if not is_installed():
            _install(_target())
    return _target() / "node_modules"


def _install(target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix="dashboard-install-", dir=target.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(NODE_DIR / name, staging / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging, check=True, capture_output=True, timeout=INSTALL_TIMEOUT_S,
        )  # fmt: skip
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def dashboard_storage_env(database_url: str) -> dict[str, str]:
    """The dashboard's STORAGE and DATABASE_* variables for the database at `database_url`."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {"DATABASE_FILE": str(url.database)}
    scheme, storage = {"postgresql": ("postgres", "postgresql")}.get(
        backend, ("mariadb", "mariadb")
    )
    auth = url.username or ""
    if url.password:
        auth += f":{url.password}"
    port = url.port or (5432 if backend == "postgresql" else 3306)
    location = f"{scheme}://{auth}@{url.host}:{port}/{url.database}"
    return {"STORAGE": storage, "DATABASE_URL": location}


@dataclass
class Dashboard:
    """One dashboard process; `call(op, **args)` is one request to its API (see driver.cjs)."""

    env: Mapping[str, str]

    def __post_init__(self) -> None:
        modules = installed_modules()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
        env.update({"NODE_PATH": str(modules), "BCRYPT_WORKLOAD_FACTOR": "4", **self.env})
        # A file, not a pipe: nobody reads stderr until the end, and a full pipe would block.
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            ["node", str(NODE_DIR / "driver.cjs")],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )  # fmt: skip
        self.replies: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        ready = self._reply()
        if not ready.get("ready"):
            raise RuntimeError(f"dashboard did not start: {ready}")

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.replies.put(line)
        self.replies.put("")

    def _reply(self) -> dict[str, Any]:
        try:
            line = self.replies.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            raise TimeoutError(f"no reply from the dashboard in {REPLY_TIMEOUT_S}s") from None
        if not line:
            self.stderr.seek(0)
            raise RuntimeError(f"the dashboard exited: {self.stderr.read()[-2000:]}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise DashboardError(reply["error"])
        result: dict[str, Any] = reply["result"]
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=REPLY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=REPLY_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()
