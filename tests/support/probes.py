"""What a worker answers from outside: `account-reset health`, and its HTTP endpoints (metrics,
Flower), asked again until the answer a test waits for comes."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.waiting import poll_until

CLI = str(Path(sys.executable).parent / "account-reset")
PROBE_DEADLINE_S = 60.0
# Each check runs the real probe, a process of its own; a tighter loop only costs CPU.
PROBE_INTERVAL_S = 0.2

Answer = subprocess.CompletedProcess[str]


def run_cli(env: Mapping[str, str], *args: str, stdin: str = "", check: bool = True) -> Answer:
    """One run of the real `account-reset` console script, `stdin` on its standard input."""
    return subprocess.run(
        [CLI, *args], env=env, input=stdin, capture_output=True, text=True, check=check,
        timeout=PROBE_DEADLINE_S,
    )  # fmt: skip


def health(env: Mapping[str, str], timeout_s: float = PROBE_DEADLINE_S) -> Answer:
    """One run of `account-reset health` with a worker's settings."""
    return subprocess.run(
        [CLI, "health"], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def health_until(
    env: Mapping[str, str],
    accept: Callable[[Answer], bool],
    what: str,
    timeout_s: float = PROBE_DEADLINE_S,
) -> Answer:
    """Run `account-reset health` until `accept(answer)`; TimeoutError with the last answer."""
    last: list[Answer] = []

    def accepted() -> Answer | None:
        last.append(answer := health(env))
        return answer if accept(answer) else None

    try:
        return poll_until(accepted, timeout_s, what, interval_s=PROBE_INTERVAL_S)
    except TimeoutError as error:
        raise TimeoutError(f"{error}; last: {last[-1].stdout}{last[-1].stderr}") from None


def http_get(url: str, basic_auth: str | None = None, timeout_s: float = 10) -> tuple[int, bytes]:
    """The status and body at a local URL; OSError while nothing listens there."""
    request = urllib.request.Request(url)  # a local URL
    if basic_auth:
        token = base64.b64encode(basic_auth.encode()).decode()
        request.add_header("Authorization", "Basic " + token)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, b""


def http_until(
    url: str,
    accept: Callable[[int, bytes], bool] = lambda _status, _body: True,
    what: str = "",
    timeout_s: float = PROBE_DEADLINE_S,
) -> tuple[int, bytes]:
    """The first answer at `url` that `accept` takes, from a server that may still be starting."""

    def answer() -> tuple[int, bytes] | None:
        try:
            status, body = http_get(url, timeout_s=20)
        except OSError:
            return None  # not listening yet
        return (status, body) if accept(status, body) else None

    return poll_until(answer, timeout_s, what or f"an answer at {url}", interval_s=PROBE_INTERVAL_S)


def metrics(port: str | int, timeout_s: float = PROBE_DEADLINE_S) -> str:
    """A worker's /metrics page, once its server listens."""
    return http_until(f"http://127.0.0.1:{port}/metrics", timeout_s=timeout_s)[1].decode()
