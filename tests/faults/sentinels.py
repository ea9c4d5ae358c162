"""A private Redis Sentinel deployment: a master, a replica and three sentinels, all children of
the test on free ports of 127.0.0.1, that a test may fail over (`SENTINEL FAILOVER`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from tests.support.services import REDIS_SERVER, ServiceError, wait_until_serving
from tests.support.waiting import poll_until
from worker.dev.processes import free_port

MASTER_NAME = "account-reset-master"
START_DEADLINE_S = 10.0
# Sentinels find the replica and each other through the master (hello messages every 2 s).
READY_DEADLINE_S = 30.0
FAILOVER_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0
POLL_INTERVAL_S = 0.05


class _Node:
    def __init__(self, directory: Path, name: str, args: list[str]) -> None:
        self.port = free_port()
        self.directory = directory / name
        self.directory.mkdir()
        self.log_path = self.directory / "redis.log"
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, sentinel_config: str | None = None) -> None:
        argv = [str(REDIS_SERVER)]
        if sentinel_config is not None:
            config = self.directory / "sentinel.conf"  # sentinels rewrite it: their own copy
            config.write_text(sentinel_config.format(port=self.port, dir=self.directory))
            argv += [str(config), "--sentinel"]
        else:
            argv += [
                "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                *self.args,
            ]  # fmt: skip
        argv += ["--logfile", str(self.log_path)]
        self.process = subprocess.Popen(argv, cwd=self.directory, stdin=subprocess.DEVNULL)
        client = self.client()
        try:
            wait_until_serving(client, self.process, START_DEADLINE_S, self.log)
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE_S)
            self.process = None


SENTINEL_CONFIG = """\
bind 127.0.0.1
port {port}
dir {dir}
sentinel monitor %(master)s 127.0.0.1 %(master_port)d 2
sentinel down-after-milliseconds %(master)s 2000
sentinel failover-timeout %(master)s 10000
sentinel parallel-syncs %(master)s 1
"""


class SentinelGroup:
    """Master, replica and three sentinels (quorum 2), AOF fsynced on every write."""

    def __init__(self, *, min_replicas_max_lag_s: int | None = None) -> None:
        """`min_replicas_max_lag_s`: a master refuses writes (NOREPLICAS) once no replica has
        answered for that long, which bounds how long a master cut off by a failover takes
        writes that the failover will drop (both data nodes, since either may be master)."""
        self.directory = Path(tempfile.mkdtemp(prefix="fault-sentinel-"))
        bound = (
            []
            if min_replicas_max_lag_s is None
            else [
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                str(min_replicas_max_lag_s),
            ]
        )
        self.master = _Node(self.directory, "master", bound)
        self.replica = _Node(
            self.directory, "replica", ["--replicaof", "127.0.0.1", str(self.master.port), *bound]
        )
        self.sentinels = [_Node(self.directory, f"sentinel{i}", []) for i in range(3)]

    @property
    def url(self) -> str:
        """kombu's Sentinel URL form, every sentinel named."""
        return ";".join(f"sentinel://127.0.0.1:{node.port}" for node in self.sentinels) + "/0"

    def __enter__(self) -> Self:
        try:
            self.master.start()
            self.replica.start()
            config = SENTINEL_CONFIG % {"master": MASTER_NAME, "master_port": self.master.port}
            for node in self.sentinels:
                node.start(sentinel_config=config)
            self._wait_until_ready()
        except BaseException:
            self._kill_all()
            raise
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._kill_all()

    def _kill_all(self) -> None:
        for node in (*self.sentinels, self.replica, self.master):
            node.kill()
        # Their configurations, logs and append-only files: nothing of the group stays in /tmp.
        shutil.rmtree(self.directory, ignore_errors=True)

    def master_port(self, sentinel: _Node | None = None) -> int:
        client = (sentinel or self.sentinels[0]).client()
        try:
            address: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(address[1])
        finally:
            client.close()

    def _wait_until_ready(self) -> None:
        """Every sentinel knows the replica (in sync) and the two other sentinels."""
        try:
            poll_until(
                self._ready, READY_DEADLINE_S, "sentinels ready", interval_s=POLL_INTERVAL_S * 4
            )
        except TimeoutError as error:
            raise ServiceError(f"{error}:\n{self.sentinels[0].log()}") from error

    def _ready(self) -> bool:
        for node in self.sentinels:
            client = node.client()
            try:
                master: Any = client.sentinel_master(MASTER_NAME)
                replicas: Any = client.sentinel_slaves(MASTER_NAME)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if int(master.get("num-other-sentinels", 0)) < 2:
                return False
            if not any(r.get("master-link-status") == "ok" for r in replicas):
                return False
        return True

    def fail_over(self) -> tuple[int, int]:
        """`SENTINEL FAILOVER`, until every sentinel names the replica and the old master has
        become its replica. Returns the old and the new master's ports."""
        old = self.master_port()
        client = self.sentinels[0].client()
        try:
            client.sentinel_failover(MASTER_NAME)
        finally:
            client.close()
        poll_until(
            lambda: (
                all(self.master_port(node) != old for node in self.sentinels)
                and self._is_replica(old)
            ),
            FAILOVER_DEADLINE_S,
            "a failover",
            interval_s=POLL_INTERVAL_S,
        )
        return old, self.master_port()

    def _is_replica(self, port: int) -> bool:
        node = self.master if self.master.port == port else self.replica
        client = node.client()
        try:
            return bool(client.info("replication")["role"] == "slave")
        except redis.RedisError:
            return False
        finally:
            client.close()
