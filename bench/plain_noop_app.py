"""The headline ceiling: a no-op task on a Celery app left at Celery's own defaults.

Kombu's Redis transport (BRPOP), prefetch 4, early acknowledgement, no task events, prefork:
what a team writing a plain Celery worker would start from. Only the broker is set.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

app = Celery("bench-plain-noop", broker=os.environ["ACCOUNT_RESET_BROKER_URL"])


@app.task(name="noop")
def noop(**_kwargs: Any) -> None:
    return None
