"""A deploy's SIGTERM: finish and acknowledge the commands in flight, then let Celery stop.

Celery's warm shutdown closes the consumer (and its event loop) before it waits for the pool,
so a task that finishes in that window is never acknowledged: its child waits 30 s for the
main process to read its result, and Redis redelivers the message on the next start (a replay,
not a second effect, but a repeated event). This step stops first: it stops taking messages,
then runs the event loop until no task is in flight, so the tasks that finish are acknowledged
while the connection is still open (a result read just as the drain starts can still slip
through and be replayed on the next start: same event_id, no second effect). Messages that
were never started (a retry's countdown) stay unacknowledged, and Redis takes them back when
the connection closes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps
from celery.worker import state

from worker import bootstrap

log = logging.getLogger(__name__)


class DrainOnShutdown(bootsteps.StartStopStep):
    """A step of the consumer: stopped before its task consumer and connection are."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, consumer: Any) -> None:
        hub = consumer.controller.hub
        # Only for a warm shutdown; a lost connection has its own handling in Celery.
        stopping = state.should_stop is not None and state.should_stop is not False  # 0 is EX_OK
        if not stopping or hub is None or consumer.task_consumer is None:
            return
        consumer.task_consumer.cancel()
        deadline = time.monotonic() + bootstrap.settings().soft_shutdown_timeout_s
        log.info("shutdown: draining %d command(s) in flight", _in_flight(consumer))
        # A result read in one round queues its acknowledgement for the next: run until both
        # the pool and the loop's queue of ready callbacks are empty.
        while _in_flight(consumer) or getattr(hub, "_ready", None):
            if time.monotonic() > deadline:
                log.warning("shutdown: %d command(s) still running", _in_flight(consumer))
                return
            hub.run_once()


def _in_flight(consumer: Any) -> int:
    """Tasks handed to the pool whose results the main process has not read yet.

    Celery's own request registry cannot say: the consumer clears its reserved requests when it
    starts closing, before this step runs. The pool's job cache (billiard) holds each job until
    its result is read, and an ETA task (a retry's countdown) is not in it until it is due.
    """
    jobs = getattr(consumer.pool, "_pool", None)
    cache = getattr(jobs, "_cache", None)
    return len(cache) if cache is not None else len(state.active_requests)
