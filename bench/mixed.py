"""Revocation latency under mixed load: reset-session-key at a steady rate on its own queue and
node (SESSIONS_QUEUE, `--sessions`) while a burst of password resets keeps bcrypt busy on the
main node, each revocation timed from its push to its event."""

from __future__ import annotations

import threading

import redis

from bench.measure import Latency, latency_at, push


def latency_beside_a_burst(
    client: redis.Redis,
    *,
    sessions_queue: str,
    stream: str,
    revocations: list[str],
    rate: float,
    queue: str,
    passwords: list[str],
) -> Latency:
    """Push the whole password burst, then send the revocations at `rate` while it drains."""
    burst = threading.Thread(target=push, args=(client, queue, passwords), daemon=True)
    burst.start()
    burst.join()
    return latency_at(client, sessions_queue, stream, revocations, rate)
