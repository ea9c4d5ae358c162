"""Kombu's Redis transport, with two faults of kombu 5.7 closed.

**A message taken but not yet recorded.** Kombu takes a message with BRPOP and only then
records it as unacknowledged; a worker killed in between, a Redis killed in between, or a
connection dropped with the reply unread, loses the message: Redis keeps no copy. Here a
consumer of a single queue takes it with BLMOVE into the queue's reserved list instead, and
the same MULTI that records it as unacknowledged removes it from that list. Anything left in
the reserved list longer than the visibility timeout belonged to a worker that died in that
instant: the periodic restore puts it back on the queue. A message is thus always in the
queue, the reserved list or the unacknowledged set. (Consuming several queues, or priority
sub-queues, falls back to kombu's BRPOP.)

**A queue entry that stops every worker.** Kombu parses each entry whole, of any size, and
stops the worker on anything but the errors it expects (50,000 nested arrays: RecursionError,
"Unrecoverable error", and the entry came back at every restore to stop the next worker). Here
an entry over `max_entry_bytes` is never parsed, and one that fails to parse in any way is not a
message: both are dead-lettered and dropped, and the worker goes on.

**A lost connection stopping the worker.** When the broker connection is lost, kombu closes
the channel and puts its unacknowledged messages back on the queue; in kombu 5.7 that step
needs the connection's details, which are already gone, and the AttributeError stops the
worker ("Unrecoverable error"). Those messages are still in Redis's unacknowledged set, so
the periodic restore brings them back once the visibility timeout passes: this leaves them to
it, and the worker reconnects.

**A Redis refusing commands stopping the worker.** A full Redis refuses BLMOVE (and the
MULTI that records a message; kombu's BRPOP is not refused), a replica refuses every write,
a loading or busy one every command, each with an error reply that kombu let through as
"Unrecoverable error: OutOfMemoryError". Here such a refusal (worker/broker/refusals.py) is
counted and noted, and the take waits (0.1 s doubling to 2 s, without blocking the event
loop) and tries again; a message taken while its record was refused stays in the reserved
list for the restore sweep, and a refused sweep or acknowledgement is left for the next one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.sentinel import Sentinel
from typing_extensions import override

from worker import keys
from worker.broker.refusals import note_refusal, refusal_kind

log = logging.getLogger(__name__)

# Puts a reserved message back on its queue only if it is still reserved (no worker took it).
RETURN_RESERVED = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[1])
    return 1
end
return 0
"""


# The stubs know little of kombu's Redis internals, which these classes extend.
_KombuQoS: Any = kombu_redis.QoS
_KombuChannel: Any = kombu_redis.Channel


# The take's wait after a refusal: doubled at each refusal in a row, up to the last figure.
REFUSED_WAIT_FIRST_S = 0.1
REFUSED_WAIT_MAX_S = 2.0


# The name tests and the benchmark know the reserved list by.
reserved_key = keys.reserved


def _noted_if_refused(exc: BaseException, where: str) -> bool:
    """True (and counted, noted) when `exc` is Redis refusing commands for a while."""
    kind = refusal_kind(exc)
    if kind is None:
        return False
    note_refusal(kind, where=where)
    return True


class QoS(_KombuQoS):  # type: ignore[misc]
    @override
    def append(self, message: Any, delivery_tag: str) -> None:
        reserved = self.channel.reserved_now
        if reserved is None:
            super().append(message, delivery_tag)
            return
        queue, item = reserved
        # Restored (a lost worker, a shutdown) to the queue it was taken from: the message's own
        # delivery_info is the producer's text, and kombu would push it to any key it names.
        record = dumps([message._raw, "", queue])
        with self.pipe_or_acquire() as pipe:  # one MULTI: recorded and no longer reserved
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
            pipe.hset(self.unacked_key, delivery_tag, record)
            pipe.lrem(keys.reserved(queue), 1, item)
            pipe.execute()
        virtual.QoS.append(self, message, delivery_tag)

    @override
    def ack(self, delivery_tag: str) -> None:
        try:
            super().ack(delivery_tag)
        except Exception as exc:
            if not _noted_if_refused(exc, "an acknowledgement"):
                raise
            # Still in the unacknowledged set: redelivered after the visibility timeout, and
            # answered then with its recorded outcome (same event_id).
            virtual.QoS.ack(self, delivery_tag)

    @override
    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except Exception as exc:
            if not _noted_if_refused(exc, "a message put back"):
                raise
            virtual.QoS.ack(self, delivery_tag)  # left unacknowledged, for the restore sweep

    @override
    def restore_unacked(self, client: Any = None) -> Any:
        try:
            return super().restore_unacked(client)
        except Exception as exc:
            if not isinstance(exc, AttributeError) and not _noted_if_refused(exc, "a restore"):
                raise
            delivered: dict[str, Any] = self._delivered or {}
            log.warning(
                "broker connection lost: %d unacknowledged message(s) left for the restore"
                " after the visibility timeout",
                len(delivered),
            )
            delivered.clear()
            return []

    @override
    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        try:
            super().restore_visible(start, num, interval)
            if (self._vrestore_count - 1) % (interval or 1) == 0:
                self.channel.restore_reserved(self.visibility_timeout)
        except Exception as exc:
            if not _noted_if_refused(exc, "the restore sweep"):
                raise  # the next sweep puts back what this one could not


class RedisRefusesWrites(redis.ConnectionError):
    """Redis refused a consumer's queue declaration (full, a replica, too few replicas): to
    Celery a lost connection, which it re-establishes with its backoff, where any other error
    there stops the worker ("Unrecoverable error")."""


class Channel(_KombuChannel):  # type: ignore[misc]
    QoS = QoS
    # The message being delivered, as (its queue, the entry taken into the reserved list).
    reserved_now: tuple[str, bytes] | None = None
    _single_queue: str | None = None
    # While Redis refuses commands: no take before this (time.monotonic()), and how many in a row.
    _refused_until: float = 0.0
    _refusals_in_row: int = 0
    # A whole queue entry (envelope, headers and body) larger than this is refused unread.
    max_entry_bytes: int = 256 * 1024
    from_transport_options = (*_KombuChannel.from_transport_options, "max_entry_bytes")

    @override
    def _queue_bind(self, *args: Any) -> None:
        # Every consumer start and reconnect declares its queue: a write, so a Redis refusing
        # writes (NOREPLICAS after a failover, OOM, READONLY) refused it and stopped the worker.
        try:
            super()._queue_bind(*args)
        except redis.ResponseError as exc:
            if not _noted_if_refused(exc, "queue declaration"):
                raise
            raise RedisRefusesWrites(
                f"Redis refused the queue declaration ({refusal_kind(exc)})"
            ) from None

    @override
    def _brpop_start(self, timeout: int | None = None) -> None:
        if time.monotonic() < self._refused_until:
            # Nothing sent: the event loop calls again at its next tick (timers keep it to
            # about a second), so the wait blocks nothing else.
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if len(queues) != 1 or len(self.priority_steps) != 1 or self.global_keyprefix:
            self._single_queue = None
            super()._brpop_start(timeout)
            return
        queue = self._q_for_pri(queues[0], self.priority_steps[0])
        self._single_queue = queues[0]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        wait = self.brpop_timeout if timeout is None else timeout
        self.client.connection.send_command(
            "BLMOVE", queue, keys.reserved(queue), "RIGHT", "LEFT", wait or 0
        )

    @override
    def _brpop_read(self, **options: Any) -> Any:
        try:
            taken = self._take(**options)
        except Exception as exc:
            if not _noted_if_refused(exc, "the take from the queue"):
                self._refusals_in_row = 0
                raise
            # Whatever was taken is in the queue, its reserved list or the unacknowledged set.
            self._refusals_in_row += 1
            wait_s = REFUSED_WAIT_FIRST_S * 2 ** min(self._refusals_in_row - 1, 8)
            self._refused_until = time.monotonic() + min(wait_s, REFUSED_WAIT_MAX_S)
            self._in_poll = None
            raise virtual.Empty() from None
        self._refusals_in_row = 0
        return taken

    def _take(self, **options: Any) -> Any:
        queue = self._single_queue
        if queue is None:
            return super()._brpop_read(**options)
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors as exc:
                if refusal_kind(exc) is None:  # LOADING is a full reply on a sound connection
                    self.client.connection.disconnect()  # the next poll reconnects
                raise
            if not item:
                raise virtual.Empty()
            payload = _envelope(item) if len(item) <= self.max_entry_bytes else None
            if payload is None:
                _refuse_unreadable(self.client, keys.reserved(queue), item, self.max_entry_bytes)
                raise virtual.Empty()
            self.reserved_now = (queue, item)
            try:
                self.connection._deliver(payload, queue)
            finally:
                self.reserved_now = None
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def restore_reserved(self, older_than_s: float) -> None:
        """Put back on its queue each message reserved longer than `older_than_s`.

        A message is reserved for the instant between BLMOVE and its unacknowledged record;
        the first sweep that sees it notes the time, and a later one returns it.
        """
        for queue in self.active_queues:
            mutex_expire_s = int(older_than_s) + 1
            with self.conn_or_acquire() as client:
                try:
                    with kombu_redis.Mutex(client, keys.reserved_mutex(queue), mutex_expire_s):
                        _return_stale(client, queue, older_than_s)
                except kombu_redis.MutexHeld:
                    pass


def _envelope(item: bytes) -> dict[str, Any] | None:
    """The kombu envelope in `item`, or None when kombu could not make a message of it."""
    try:
        payload = loads(bytes_to_str(item))
    except (ValueError, RecursionError, MemoryError):  # invalid UTF-8 or JSON; too deep
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
        return None
    return payload if _readable_by_kombu(payload) else None


MAX_DELIVERY_TAG_LENGTH = 256


def _readable_by_kombu(payload: dict[str, Any]) -> bool:
    """What kombu and Celery read before any check of the worker's can run, of the types they
    assume: anything else stops the worker ("Unrecoverable error") with the entry still in
    Redis, so it would stop the next worker too. No compression either: kombu inflates a
    compressed body before its size is known (1.5 KB of bz2 held 1 GB)."""
    properties, headers = payload["properties"], payload.get("headers", {})
    delivery, tag = properties.get("delivery_info"), properties.get("delivery_tag")
    if not isinstance(tag, str) or not 0 < len(tag) <= MAX_DELIVERY_TAG_LENGTH:
        return False
    if not isinstance(delivery, dict) or not all(
        isinstance(delivery.get(name), str) for name in ("exchange", "routing_key")
    ):
        return False
    if properties.get("body_encoding") != "base64" or not _decodes(payload.get("body")):
        return False
    if not isinstance(headers, dict) or headers.get("compression") is not None:
        return False
    if not isinstance(headers.get("task", ""), str) or not isinstance(headers.get("id", ""), str):
        return False
    return all(
        isinstance(payload.get(name, ""), str) for name in ("content-type", "content-encoding")
    )


BASE64 = virtual.Channel.codecs["base64"]


def _decodes(body: Any) -> bool:
    """Whether kombu's own base64 codec takes `body`: it decodes the body before any check
    runs, and stopped the worker on anything it refused (not base64, a lone surrogate)."""
    if not isinstance(body, str):
        return False
    try:
        BASE64.decode(body)
    except ValueError:  # binascii.Error, UnicodeEncodeError
        return False
    return True


def _refuse_unreadable(client: Any, key: str, item: bytes, max_entry_bytes: int) -> None:
    """Dead-letter a queue entry that is not a kombu message, or too large to read, then
    forget it. Nothing of it is kept: unread, it cannot be told apart from a secret."""
    from worker.bootstrap import runtime  # the worker's parts; the transport loads first
    from worker.streams.dead_letters import Reason, sealed_letter

    box = runtime().dead_letters
    if len(item) > max_entry_bytes:
        reason = Reason.TOO_LARGE
        detail = f"a queue entry of {len(item)} bytes, over the limit of {max_entry_bytes}"
    else:
        reason = Reason.UNDECODABLE
        detail = f"a queue entry of {len(item)} bytes that is not a kombu JSON envelope"
    letter = sealed_letter(
        reason=reason, detail=detail, task=None, task_id=None, kwargs=None,
        sealer=box.sealer, hostname=None,
    )  # fmt: skip
    letter_id = box.put(letter)
    client.lrem(key, 1, item)
    log.error("dead-lettered %s as %s", detail, letter_id)


def _return_stale(client: Any, queue: str, older_than_s: float) -> None:
    key, seen_key = keys.reserved(queue), keys.reserved_seen(queue)
    items = {hashlib.sha256(item).hexdigest(): item for item in client.lrange(key, 0, -1)}
    first_seen = {_text(d): score for d, score in client.zrange(seen_key, 0, -1, withscores=True)}
    now = time.time()
    with client.pipeline() as pipe:
        for digest in items.keys() - first_seen.keys():
            pipe.zadd(seen_key, {digest: now})
        for digest in first_seen.keys() - items.keys():
            pipe.zrem(seen_key, digest)
        pipe.execute()
    put_back = client.register_script(RETURN_RESERVED)
    for digest, since in first_seen.items():
        if digest in items and now - since > older_than_s:
            if put_back(keys=[key, queue], args=[items[digest]]):
                log.warning("a message reserved by a worker that died was put back on %s", queue)
            client.zrem(seen_key, digest)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Transport(kombu_redis.Transport):
    Channel = Channel


_KombuSentinelChannel: Any = kombu_redis.SentinelChannel


class SentinelChannel(Channel, _KombuSentinelChannel):  # type: ignore[misc]
    """The worker's channel (BLMOVE into the reserved list, the entry checks) on the master that
    Redis Sentinel names, with kombu's Sentinel connections: a connection to a demoted master
    fails as a connection error (redis-py), and the consumer reconnects to the new master.

    The sentinels come from the `sentinels` transport option (client/redis_clients.py), not from
    kombu's failover URLs: switching to one of those re-reads its scheme and would drop this
    transport for kombu's own, which takes messages with BRPOP.
    """

    sentinels: list[tuple[str, int]] | None = None
    from_transport_options = (
        *_KombuSentinelChannel.from_transport_options,
        "max_entry_bytes",
        "sentinels",
    )

    @override
    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        if not self.sentinels:
            return super()._sentinel_managed_pool(asynchronous)
        master_name = getattr(self, "master_name", None)
        if master_name is None:
            raise ValueError("a sentinel:// broker needs ACCOUNT_RESET_SENTINEL_MASTER")
        params = {
            name: value
            for name, value in self._connparams(asynchronous).items()
            if name not in ("host", "port")
        }
        manager = Sentinel(
            [(str(host), int(port)) for host, port in self.sentinels],
            min_other_sentinels=getattr(self, "min_other_sentinels", 0),
            sentinel_kwargs=getattr(self, "sentinel_kwargs", None),
            **params,
        )
        # Kept so that kombu closes the connections to the sentinels with the channel.
        if asynchronous:
            self._async_sentinel_manager = manager
        else:
            self._sentinel_manager = manager
        return manager.master_for(master_name).connection_pool


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
