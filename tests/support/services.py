"""Private PostgreSQL and Redis servers that fault tests may stop, kill and restart.

Fault tests take a database or a broker away while the worker runs, and check what the worker
does when it comes back. That cannot be done to the machine's shared PostgreSQL and Redis: other
tests (and other people) use them, and killing them is neither ours to do nor repeatable. So each
test gets servers of its own: its own cluster directory or AOF directory under a fresh temp dir,
its own TCP port on 127.0.0.1, its own unix-socket directory, and nothing shared with the machine.

Durability is left as in production (fsync on, `appendfsync always`), because fault tests are
about what survives a crash; a faster but unsafe configuration would make them prove nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import psycopg
import redis
from psycopg import sql

from tests.support.waiting import poll_until
from worker.dev.processes import free_port

StopMode = Literal["smart", "fast", "immediate"]

POSTGRES_LIB_DIR = Path("/usr/lib/postgresql")
POSTGRES_OS_USER = "postgres"
RUNUSER = "/usr/sbin/runuser"
REDIS_SERVER = Path("/usr/bin/redis-server")

POSTGRES_START_DEADLINE_S = 30.0
POSTGRES_STOP_DEADLINE_S = 30.0
INITDB_DEADLINE_S = 120.0
REDIS_START_DEADLINE_S = 10.0
REDIS_STOP_DEADLINE_S = 10.0
KILL_DEADLINE_S = 10.0
POLL_INTERVAL_S = 0.02
LOG_TAIL_CHARS = 4000


# Fault tests are about what survives a crash, so durability stays real for them; a server that
# only stands in for a missing one (tests/support/servers.py) is thrown away, never crashed.
DURABLE_SETTINGS = ["fsync = on", "synchronous_commit = on", "full_page_writes = on"]
THROWAWAY_SETTINGS = ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]


class ServiceError(RuntimeError):
    """A private server could not be set up, started or stopped."""


def find_postgres_bin_dir() -> Path:
    """The bin directory of the newest PostgreSQL installed under /usr/lib/postgresql."""
    candidates = [
        path.parent
        for path in POSTGRES_LIB_DIR.glob("*/bin/pg_ctl")
        if path.parent.parent.name.isdigit() and (path.parent / "initdb").exists()
    ]
    if not candidates:
        raise ServiceError(f"no PostgreSQL server binaries under {POSTGRES_LIB_DIR}")
    return max(candidates, key=lambda path: int(path.parent.name))


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except FileNotFoundError:
        return ""


def _lock_file_pid(path: Path) -> int | None:
    """The PID on the first line of a PostgreSQL lock file, or None when there is none."""
    try:
        first_line = path.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    return int(first_line) if first_line.isdigit() else None


def _process_state(pid: int) -> str | None:
    """The /proc state letter of `pid`, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may itself contain spaces or parentheses.
    return stat.rpartition(")")[2].split()[0]


def _is_alive(pid: int) -> bool:
    # A killed postmaster is re-parented to PID 1, which here reaps late; a zombie is as good as
    # dead for us (it holds no port, shared memory or files), so it must not make us wait.
    return _process_state(pid) not in (None, "Z", "X")


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _wait_until_dead(pids: Iterable[int], deadline_s: float) -> None:
    victims = sorted(pids)
    poll_until(
        lambda: not any(_is_alive(pid) for pid in victims),
        deadline_s,
        f"processes {victims} gone after SIGKILL",
        interval_s=POLL_INTERVAL_S,
    )


def wait_until_serving(
    client: redis.Redis,
    process: subprocess.Popen[bytes],
    timeout_s: float,
    log: Callable[[], str],
) -> None:
    """Until the redis-server `process` answers `client`; ServiceError (with its `log()`) if it
    exits, if another server answers on its port, or at the deadline."""

    def serving() -> bool:
        if process.poll() is not None:
            raise ServiceError(f"redis-server exited with {process.returncode}:\n{log()}")
        try:
            served_by = int(client.info("server")["process_id"])
        except redis.RedisError:
            return False  # not listening yet, or LOADING a large AOF
        # The PID check guards against answering for some other server that took the port
        # while ours failed to bind it.
        if served_by != process.pid:
            raise ServiceError(f"{client} is served by another redis-server")
        return True

    try:
        poll_until(serving, timeout_s, "redis-server answering", interval_s=POLL_INTERVAL_S)
    except TimeoutError as error:
        raise ServiceError(f"{error}:\n{log()}") from error


class _PrivateService:
    """Shared lifetime handling: context manager, and cleanup if a test forgets `destroy()`."""

    directory: Path

    def __init__(self, prefix: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        # Only the creating process may clean up: a forked child that exits must not take the
        # server away from the parent still using it.
        self._owner_pid = os.getpid()
        self._atexit_registered = False

    def start(self) -> Self:
        raise NotImplementedError

    def _shut_down(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        """Stop the server if it runs and delete its directory; the object is unusable after."""
        if os.getpid() != self._owner_pid:
            return
        try:
            self._shut_down()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            if self._atexit_registered:
                atexit.unregister(self.destroy)
                self._atexit_registered = False

    def _register_cleanup(self) -> None:
        # A server left behind by a crashed test run would hold its port and temp dir forever.
        if not self._atexit_registered:
            atexit.register(self.destroy)
            self._atexit_registered = True

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.destroy()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()


class PrivatePostgres(_PrivateService):
    """A PostgreSQL cluster of its own on 127.0.0.1, created by the first `start()`; without
    fsync when not `durable` (a stand-in for a missing server, which no test crashes)."""

    def __init__(
        self, *, bin_dir: Path | None = None, port: int | None = None, durable: bool = True
    ) -> None:
        self.bin_dir = bin_dir if bin_dir is not None else find_postgres_bin_dir()
        super().__init__(prefix="fault-pg-" if durable else "test-pg-")
        self.durable = durable
        self.port = port if port is not None else free_port()
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self._initialized = False
        self._running = False
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root, so the cluster belongs to the postgres user.
            account = pwd.getpwnam(POSTGRES_OS_USER)
            os.chown(self.directory, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    @property
    def running(self) -> bool:
        return self._running

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        return _log_tail(self.log_path)

    def start(self) -> Self:
        if self._running:
            raise ServiceError("PostgreSQL is already running")
        if not self._initialized:
            self._initdb()
        self._remove_stale_lock_files()
        self._run(
            "pg_ctl", "start", "-w", "-t", str(int(POSTGRES_START_DEADLINE_S)),
            "-D", str(self.data_dir), "-l", str(self.log_path),
            timeout=POSTGRES_START_DEADLINE_S + 5,
        )  # fmt: skip
        self._running = True
        self._register_cleanup()
        self._wait_until_accepting()
        return self

    def stop(self, mode: StopMode = "fast") -> None:
        if not self._running:
            return
        self._run(
            "pg_ctl", "stop", "-w", "-t", str(int(POSTGRES_STOP_DEADLINE_S)),
            "-m", mode, "-D", str(self.data_dir),
            timeout=POSTGRES_STOP_DEADLINE_S + 5,
        )  # fmt: skip
        self._running = False

    def kill(self) -> None:
        """SIGKILL the postmaster and every child, as a crash would; the next start recovers."""
        if not self._running:
            return
        postmaster = self._postmaster_pid()
        if postmaster is not None and _is_alive(postmaster):
            # Frozen first, so it cannot fork a new backend between listing and killing them;
            # a backend left alive would keep the shared memory and block the restart.
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGSTOP)
            # Backends before the postmaster: a backend that saw the postmaster die first would
            # send its client a polite FATAL, where a crash gives a dropped connection.
            victims = [*_children(postmaster), postmaster]
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _wait_until_dead(victims, KILL_DEADLINE_S)
        self._running = False

    def restart(self, mode: StopMode = "fast") -> Self:
        self.stop(mode)
        return self.start()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def _shut_down(self) -> None:
        # The data is about to be deleted, so a checkpoint at shutdown would only cost time.
        try:
            self.stop("immediate")
        except ServiceError:
            # A test may have broken the server beyond what pg_ctl can stop; clean up anyway.
            self.kill()

    def _initdb(self) -> None:
        self._run(
            "initdb", "-D", str(self.data_dir),
            "--auth=trust", "--username=postgres", "-E", "UTF8",
            # The C locale exists everywhere and sorts the same on every machine.
            "--no-locale",
            # Only skips flushing the fresh cluster files at initdb time; the server keeps fsync.
            "--no-sync",
            timeout=INITDB_DEADLINE_S,
        )  # fmt: skip
        socket_dir = str(self.directory).replace("'", "''")
        settings = "\n".join(
            [
                "",
                "# Private test cluster: must not meet the machine's server on a port or socket.",
                "listen_addresses = '127.0.0.1'",
                f"port = {self.port}",
                f"unix_socket_directories = '{socket_dir}'",
                "max_connections = 100",
                *(DURABLE_SETTINGS if self.durable else THROWAWAY_SETTINGS),
                "",
            ]
        )
        with (self.data_dir / "postgresql.conf").open("a") as config:
            config.write(settings)
        self._initialized = True

    def _lock_files(self) -> list[Path]:
        return [self.data_dir / "postmaster.pid", self.directory / f".s.PGSQL.{self.port}.lock"]

    def _postmaster_pid(self) -> int | None:
        return _lock_file_pid(self._lock_files()[0])

    def _remove_stale_lock_files(self) -> None:
        # After a SIGKILL the lock files stay, as after a power cut. PostgreSQL ignores them when
        # their PID is gone, but not while that PID is an unreaped zombie, which it may be here.
        for lock_file in self._lock_files():
            pid = _lock_file_pid(lock_file)
            if pid is not None and not _is_alive(pid):
                lock_file.unlink(missing_ok=True)

    def _wait_until_accepting(self) -> None:
        # pg_ctl -w reads readiness from the pid file; a TCP connect proves what clients need.
        def accepting() -> bool:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
            except psycopg.OperationalError:
                return False
            return True

        try:
            poll_until(
                accepting,
                POSTGRES_START_DEADLINE_S,
                f"PostgreSQL accepting on port {self.port}",
                interval_s=POLL_INTERVAL_S,
            )
        except TimeoutError as error:
            raise ServiceError(f"{error}\n{self.log()}") from error

    def _run(self, tool: str, *args: str, timeout: float) -> None:
        argv = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            argv = [RUNUSER, "-u", POSTGRES_OS_USER, "--", *argv]
        # PG* variables of the caller (PGPORT, PGDATA, PGHOST...) would redirect the tools to the
        # machine's server.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        result = subprocess.run(
            argv,
            cwd=self.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"{tool} {' '.join(args[:1])} exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n--- server log ---\n{self.log()}"
            )


class PrivateRedis(_PrivateService):
    """A redis-server child process on 127.0.0.1 whose AOF is fsynced on every write.

    The port and directory stay the same for the object's life, so a `start()` after `stop()`
    or `kill()` reloads the same AOF, as a restarted production Redis would.
    """

    def __init__(self, *, executable: Path = REDIS_SERVER, port: int | None = None) -> None:
        super().__init__(prefix="fault-redis-")
        self.executable = executable
        self.port = port if port is not None else free_port()
        self.log_path = self.directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return _log_tail(self.log_path)

    def start(self) -> Self:
        if self.process is not None:
            raise ServiceError("Redis is already running")
        argv = [
            str(self.executable),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        # Errors before the log file is opened (a bad option) go to stdout, so it goes there too.
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                argv,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._register_cleanup()
        try:
            self._wait_until_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM, which Redis handles as SHUTDOWN: the AOF is flushed before it exits."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=REDIS_STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServiceError(f"Redis ignored SIGTERM for {REDIS_STOP_DEADLINE_S} s") from None
        self.process = None

    def kill(self) -> None:
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=KILL_DEADLINE_S)
        self.process = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def _shut_down(self) -> None:
        self.kill()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            wait_until_serving(client, self.process, REDIS_START_DEADLINE_S, self.log)
        finally:
            client.close()
