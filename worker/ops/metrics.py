"""What happened, turned into Prometheus metrics in one place: the `Observer` the parts are
handed (by the bootstrap), and its Prometheus implementation.

Correct under Celery's prefork pool (prometheus-client's multiprocess mode: each process writes
its own files in PROMETHEUS_MULTIPROC_DIR, and the main process serves their sum on
`METRICS_PORT`).

The worker's main process sets the directory up on `worker_init` (`prepare_multiprocess_dir`),
before the pool forks, and its pool children inherit it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


_made_here: list[str] = []


class Observer(Protocol):
    """What the worker's parts report; nothing else of theirs knows about metrics."""

    def command_processed(self, *, command: str, outcome: str, seconds: float) -> None:
        """A delivery answered: `outcome` is its exception code, or "success"."""

    def published(self, *, by: str, delay_s: float) -> None:
        """An outcome's event on the stream, `delay_s` after its commit; `by` "task" or "relay"."""

    def retried(self, *, command: str, fault: str) -> None:
        """A transient fault, retried."""

    def dead_lettered(self, *, reason: str) -> None: ...

    def guess_checked(self) -> None:
        """A reset code checked: every guessing limit let the attempt through."""

    def guess_refused(self, *, limit: str) -> None:
        """A reset code not even looked at: `limit` is used up."""

    def refused_by_redis(self, *, error: str) -> None:
        """Redis refused a command for a while (OOM, READONLY, LOADING...)."""

    def bulk_reset(self, *, accounts: int) -> None:
        """A reset-session-keys message ended the sessions of `accounts` accounts."""


class PrometheusObserver:
    """The worker's observer: each report one metric, in this process's own files."""

    def command_processed(self, *, command: str, outcome: str, seconds: float) -> None:
        counted = metrics()
        counted.commands.labels(command, outcome).inc()
        counted.duration.labels(command).observe(seconds)

    def published(self, *, by: str, delay_s: float) -> None:
        metrics().publish_delay.labels(by).observe(max(delay_s, 0.0))

    def retried(self, *, command: str, fault: str) -> None:
        metrics().retries.labels(command, fault).inc()

    def dead_lettered(self, *, reason: str) -> None:
        metrics().dead_letters.labels(reason).inc()

    def guess_checked(self) -> None:
        metrics().guesses_checked.inc()

    def guess_refused(self, *, limit: str) -> None:
        metrics().guesses_refused.labels(limit).inc()

    def refused_by_redis(self, *, error: str) -> None:
        metrics().redis_refusals.labels(error).inc()

    def bulk_reset(self, *, accounts: int) -> None:
        metrics().bulk_accounts.inc(accounts)


# Stateless (the metrics are built per process on first use): one will do for every part.
PROMETHEUS = PrometheusObserver()


def prepare_multiprocess_dir() -> str:
    """A fresh directory for this worker's metric files, unless one was given.

    prometheus-client chooses how to store values when it is first imported, and Celery's
    command line may import it first (Flower's plugin does): the choice is made again here.
    """
    if not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="account-reset-metrics-")
        _made_here.append(os.environ[MULTIPROC_ENV])
        # A worker that fails at start never stops its metrics step: the folder goes at exit.
        atexit.register(_remove_if_made_by, os.getpid())
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return os.environ[MULTIPROC_ENV]


class Metrics:
    """The worker's metrics; built once per process, on first use."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.commands: Counter = Counter(
            "account_reset_commands", "Commands processed, by command and outcome code",
            ["command", "outcome"],
        )  # fmt: skip
        self.duration: Histogram = Histogram(
            "account_reset_command_duration_seconds", "Time to process one delivery",
            ["command"], buckets=SECONDS_BUCKETS,
        )  # fmt: skip
        self.retries: Counter = Counter(
            "account_reset_retries", "Transient faults retried, by command and fault",
            ["command", "fault"],
        )  # fmt: skip
        self.dead_letters: Counter = Counter(
            "account_reset_dead_letters", "Messages dead-lettered, by reason", ["reason"]
        )
        self.publish_delay: Histogram = Histogram(
            "account_reset_publish_delay_seconds",
            "From the outcome's commit to its event on the stream, by who published it",
            ["by"], buckets=SECONDS_BUCKETS,
        )  # fmt: skip
        self.guesses_checked: Counter = Counter(
            "account_reset_guesses_checked",
            "Reset codes checked: attempts every guessing limit let through, once per delivery",
        )
        self.guesses_refused: Counter = Counter(
            "account_reset_guesses_refused",
            "Reset-code attempts refused unchecked (too-many-attempts), by the limit used up",
            ["limit"],
        )
        self.redis_refusals: Counter = Counter(
            "account_reset_redis_refusals",
            "Commands Redis refused for a while (full, read-only, loading, busy...), by error",
            ["error"],
        )
        self.bulk_accounts: Counter = Counter(
            "account_reset_bulk_accounts",
            "Accounts whose sessions reset-session-keys ended (a bulk run's progress)",
        )


def remove_multiprocess_dir() -> None:
    """At the worker's exit: the directory this process made, with its files."""
    while _made_here:
        shutil.rmtree(_made_here.pop(), ignore_errors=True)


def _remove_if_made_by(pid: int) -> None:
    if os.getpid() == pid:  # not in a forked pool process, which inherits the handler
        remove_multiprocess_dir()


_creating = threading.Lock()


@cache
def metrics() -> Metrics:
    # Made once per process; the lock keeps two threads' first calls (a threads pool, the
    # relay) from registering the same series twice.
    with _creating:
        return _made_once()


@cache
def _made_once() -> Metrics:
    return Metrics()


def serve(port: int, *, queue_depth: Any) -> Any:
    """Serve every process's metrics, plus the queue depth read at each scrape."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_QueueDepth(queue_depth))
    server, _thread = start_http_server(port, registry=registry)
    return server


class _QueueDepth:
    """Commands waiting, read from Redis when Prometheus scrapes."""

    def __init__(self, read: Any) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "account_reset_queue_depth", "Commands waiting in the queue", labels=["queue"]
        )
        for queue, waiting in self.read().items():
            depth.add_metric([queue], waiting)
        yield depth
