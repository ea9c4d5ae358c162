"""Runs the outbox relay on a thread of the worker's main process, for the worker's lifetime."""

from __future__ import annotations

import threading
from typing import Any

from celery import bootsteps

from worker.bootstrap import runtime


class OutboxRelayStep(bootsteps.StartStopStep):
    """Started after the pool, so the pool's children never inherit the thread or its locks."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.stop_requested = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:  # noqa: ARG002  # the step's interface
        parts = runtime()
        self.thread = threading.Thread(
            target=parts.relay.run,
            kwargs={"interval_s": parts.settings.relay_interval_s, "stop": self.stop_requested},
            name="outbox-relay",
            daemon=True,
        )
        self.thread.start()

    def stop(self, parent: Any) -> None:  # noqa: ARG002
        self.stop_requested.set()
        if self.thread is not None:
            self.thread.join(timeout=runtime().settings.relay_interval_s + 5)
