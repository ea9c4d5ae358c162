"""Liveness: the worker's main process notes, every few seconds, whether it is consuming.

Connected is not enough: Celery has been known to stay connected after a Redis reconnect and
never take another message. A consuming worker either has a blocking take (BLMOVE/BRPOP)
outstanding that was sent within the broker's poll timeout, or has every prefetch slot busy
with commands. This step checks that on the event loop's own timer, so a stuck loop stops the
notes too, and writes the time of the last good check to its node's note (beside
`HEALTH_FILE`: worker/ops/health_notes.py), which `account-reset health` reads.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from celery import bootsteps

from worker import bootstrap

log = logging.getLogger(__name__)
CHECK_INTERVAL_S = 2.0
# The take is re-sent every `brpop_timeout` (1 s) while idle; allow for a slow loop.
TAKE_STALE_AFTER_S = 10.0


class HealthNotes(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer: Any) -> None:
        self.path = bootstrap.health_file()
        self.timer = consumer.timer.call_repeatedly(CHECK_INTERVAL_S, self._note, (consumer,))

    def stop(self, consumer: Any) -> None:  # noqa: ARG002  # the step's interface
        timer = getattr(self, "timer", None)
        if timer is not None:
            timer.cancel()

    def _note(self, consumer: Any) -> None:
        try:
            if consuming(consumer):
                write_note(self.path, node=consumer.hostname, consuming_at=time.time())
        except Exception as exc:  # a liveness note must never break the loop it watches
            log.warning("health note not written: %s", type(exc).__name__)


def consuming(consumer: Any) -> bool:
    task_consumer = consumer.task_consumer
    channel = getattr(task_consumer, "channel", None)
    if channel is None or not getattr(channel, "active_queues", None):
        return False
    if not channel.qos.can_consume():
        return True  # every slot busy with commands: taking more would be wrong
    sent_at = getattr(channel, "_brpop_sent_at", None)
    return sent_at is not None and time.monotonic() - sent_at < TAKE_STALE_AFTER_S


def write_note(path: Path, *, node: str, consuming_at: float) -> None:
    # The pid and host tell the probe when this process is gone (health_notes.exited).
    fields = {"node": node, "pid": os.getpid(), "host": socket.gethostname()}
    partial = path.with_suffix(path.suffix + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)  # another node's stop removes an empty one
    partial.write_text(json.dumps({**fields, "consuming_at": consuming_at}))
    partial.replace(path)


def last_consuming_at(path: Path) -> float | None:
    try:
        return float(json.loads(path.read_text())["consuming_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
