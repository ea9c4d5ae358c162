"""What the benchmark measures: the time to drain a queue, and latency under a steady rate."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import redis

from client.events import follow, read_outcome, stream_end
from client.raw_message import task_id_of
from worker.broker.transport import reserved_key

DRAIN_DEADLINE_S = 600.0
PUSH_CHUNK = 500


def push(client: redis.Redis, queue: str, messages: list[str]) -> None:
    """RPUSH in pipelined chunks: taken from the right, so the first is taken first."""
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, len(messages), PUSH_CHUNK):
            pipe.rpush(queue, *messages[start : start + PUSH_CHUNK])
        pipe.execute()


def drained(client: redis.Redis, queue: str) -> bool:
    """Nothing waiting, reserved or unacknowledged: every message done and acknowledged."""
    with client.pipeline(transaction=False) as pipe:
        pipe.llen(queue)
        pipe.llen(reserved_key(queue))
        pipe.hlen(f"{queue}:unacked")
        return not any(pipe.execute())


def drain_rate(client: redis.Redis, queue: str, messages: list[str]) -> float:
    """Messages per second: from the first push until all are acknowledged."""
    started = time.perf_counter()
    push(client, queue, messages)
    deadline = started + DRAIN_DEADLINE_S
    while not drained(client, queue):
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"{queue} not drained after {DRAIN_DEADLINE_S} s")
        # Checks cost CPU the worker could use: every 1% of the time so far (2 to 50 ms).
        time.sleep(min(max((now - started) / 100, 0.002), 0.05))
    return len(messages) / (time.perf_counter() - started)


@dataclass(frozen=True)
class Latency:
    rate: float
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    # Every command's wait, sorted (the plot's curve).
    waits_ms: tuple[float, ...] = ()


def latency_at(
    client: redis.Redis, queue: str, stream: str, messages: list[str], rate: float
) -> Latency:
    """Send at `rate` per second; time each from its push to its event on the stream (read
    through `client`, which decodes responses)."""
    sent_at: dict[str, float] = {}
    arrived: dict[str, float] = {}
    start_id = stream_end(client, stream)
    wanted = {task_id_of(message) for message in messages}
    reader = threading.Thread(
        target=_follow, args=(client, stream, start_id, arrived, wanted), daemon=True
    )
    reader.start()
    interval = 1.0 / rate
    started = time.perf_counter()
    for i, message in enumerate(messages):
        time.sleep(max(started + i * interval - time.perf_counter(), 0.0))  # the steady rate
        sent_at[task_id_of(message)] = time.perf_counter()
        client.rpush(queue, message)
    reader.join(timeout=DRAIN_DEADLINE_S)
    waits = sorted((arrived[i] - sent_at[i]) * 1000 for i in sent_at if i in arrived)
    if len(waits) != len(messages):
        raise TimeoutError(f"{len(messages) - len(waits)} events never arrived")
    cuts = statistics.quantiles(waits, n=100, method="inclusive")
    return Latency(rate, len(waits), cuts[49], cuts[94], cuts[98], waits[-1], tuple(waits))


def _follow(
    client: redis.Redis, stream: str, after: str, arrived: dict[str, float], wanted: set[str]
) -> None:
    """Note when each wanted command's event arrives (the stream may carry others')."""
    reader = redis.Redis(connection_pool=client.connection_pool)
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    for batch in follow(reader, stream, after=after, deadline=deadline, block_ms=100):
        now = time.perf_counter()
        for _entry_id, fields in batch:
            command_id = read_outcome(fields).command_id
            if command_id in wanted:
                arrived.setdefault(command_id, now)
        if len(arrived) >= len(wanted):
            return
