"""The ceiling: a Celery app whose one task does nothing, configured as the worker is.

Same broker, transport (worker/broker/transport.py), serializer, acknowledgement settings
(late acks, reject on worker lost, prefetch), pool and concurrency: the fastest any Celery
worker can drain this queue on this machine.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from worker.app import celery_config
from worker.settings import get_settings


def _config() -> dict[str, Any]:
    config = celery_config(get_settings())
    config.pop("worker_consumer")  # the dead-lettering consumer only acts on refused messages
    return config


app = Celery("bench-noop")
app.add_defaults(_config)


@app.task(name="noop")
def noop(**_kwargs: Any) -> None:
    return None
