"""The headline baseline: what a team would write first, a no-op task on Celery's defaults.

kombu's own Redis transport (BRPOP), prefork, prefetch multiplier 4, acknowledged on receipt,
JSON: none of the worker's settings (bench/noop_app.py is the no-op with those).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

app = Celery("bench-plain-noop", broker=os.environ["ACCOUNT_RESET_BROKER_URL"])
app.conf.task_default_queue = os.environ["ACCOUNT_RESET_QUEUE"]


@app.task(name="noop")
def noop(**_kwargs: Any) -> None:
    return None
