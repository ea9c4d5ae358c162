"""The Celery events a broker carries (the ones Flower shows), recorded on a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.support.workers import WORKER_STOP_DEADLINE_S


class TaskEventRecorder:
    """Records the Celery events (the ones Flower shows) a broker carries, on a thread."""

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.app = Celery(broker=broker_url)
        self.events: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._capture, daemon=True)

    def __enter__(self) -> TaskEventRecorder:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=WORKER_STOP_DEADLINE_S)

    def _capture(self) -> None:
        with self.app.connection_for_read() as connection:
            self.receiver = self.app.events.Receiver(connection, handlers={"*": self._record})
            # wakeup asks every worker for a heartbeat, so a test can wait until it is heard.
            self.receiver.capture(limit=None, timeout=None, wakeup=True)

    def _record(self, event: dict[str, Any]) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float) -> None:
        with self.changed:
            if not self.changed.wait_for(
                lambda: any(predicate(e) for e in self.events), timeout=timeout_s
            ):
                raise TimeoutError("no matching Celery event before the deadline")
