"""Serves Prometheus metrics from the worker's main process, for the worker's lifetime."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from client.redis_clients import redis_client
from worker import bootstrap
from worker.ops.metrics import remove_multiprocess_dir, serve

log = logging.getLogger(__name__)


class MetricsStep(bootsteps.StartStopStep):
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.server: Any = None

    def start(self, parent: Any) -> None:  # noqa: ARG002  # the step's interface
        settings = bootstrap.settings()
        if settings.metrics_port is None:
            return
        broker = redis_client(bootstrap.broker_url(settings), settings.redis_options)
        queue = settings.consumed_queue

        def queue_depth() -> dict[str, int]:
            return {queue: int(broker.llen(queue))}

        self.server = serve(settings.metrics_port, queue_depth=queue_depth)
        log.info("metrics on port %d", settings.metrics_port)

    def stop(self, parent: Any) -> None:  # noqa: ARG002
        if self.server is not None:
            self.server.shutdown()
        remove_multiprocess_dir()
