"""The tests' one way to wait for something that gives no notification: poll it until a deadline.

Redis keys, files, /proc entries and HTTP probes cannot be waited on, so the test asks again; the
deadline bounds the wait and names what did not happen. (Streams are waited on with XREAD, which
blocks in Redis: see `tests.support.streams`.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05


def poll_until(
    predicate: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = POLL_INTERVAL_S,
) -> T:
    """Call `predicate` until it returns something true (not None, False, 0 or empty) and return
    that; TimeoutError naming `what` once `timeout_s` has passed. Each call is one check of
    something observable, never a guess at timing."""
    deadline = time.monotonic() + timeout_s
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        time.sleep(interval_s)
    return result
