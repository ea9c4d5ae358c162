"""The private kombu, Celery and billiard internals the worker extends or reads, as it expects them.

worker/broker/transport.py overrides private methods of kombu's Redis transport (written for
kombu 5.7) and replays parts of their bodies; worker/steps/drain.py reads the event loop's and the
pool's private state. pyproject.toml pins kombu and Celery to that minor version. When a new one
renames, removes or re-signs any of these, this fails, naming what moved, before a worker runs
against it: read the new kombu source and update the transport before moving the pin.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import billiard.pool
import pytest
from celery.worker import state
from kombu.asynchronous.hub import Hub
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from worker.broker import transport

# The minor version the transport was written for: the pin in pyproject.toml.
WRITTEN_FOR = (5, 7)


def parameters(function: Callable[..., Any]) -> list[tuple[str, Any]]:
    """A function's parameters (names, defaults), without `self`."""
    found = inspect.signature(function).parameters.values()
    return [(p.name, p.default) for p in found if p.name != "self"]


def source(obj: Any) -> str:
    return inspect.getsource(obj)


def test_kombu_and_celery_are_the_minor_version_the_transport_was_written_for() -> None:
    for package in ("kombu", "celery"):
        minor = tuple(int(part) for part in version(package).split(".")[:2])
        assert minor == WRITTEN_FOR, package


# Each method the transport overrides: kombu's class, the method's name, and kombu's signature
# as the override was written for it.
OVERRIDDEN = [
    (kombu_redis.QoS, "append", [("message", inspect.Parameter.empty),
                                 ("delivery_tag", inspect.Parameter.empty)]),
    (kombu_redis.QoS, "ack", [("delivery_tag", inspect.Parameter.empty)]),
    (kombu_redis.QoS, "reject", [("delivery_tag", inspect.Parameter.empty), ("requeue", False)]),
    (kombu_redis.QoS, "restore_unacked", [("client", None)]),
    (kombu_redis.QoS, "restore_visible", [("start", 0), ("num", 10), ("interval", 10)]),
    (kombu_redis.Channel, "_queue_bind", [("exchange", inspect.Parameter.empty),
                                          ("routing_key", inspect.Parameter.empty),
                                          ("pattern", inspect.Parameter.empty),
                                          ("queue", inspect.Parameter.empty)]),
    (kombu_redis.Channel, "_brpop_start", [("timeout", None)]),
    (kombu_redis.Channel, "_brpop_read", [("options", inspect.Parameter.empty)]),
    (kombu_redis.SentinelChannel, "_sentinel_managed_pool", [("asynchronous", False)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("base", "name", "expected"),
    OVERRIDDEN,
    ids=[f"{base.__name__}.{name}" for base, name, _ in OVERRIDDEN],
)
def test_each_overridden_method_is_still_kombus_with_the_same_signature(
    base: type, name: str, expected: list[tuple[str, Any]]
) -> None:
    assert name in vars(base), f"kombu's {base.__name__} no longer defines {name}"
    assert parameters(getattr(base, name)) == expected, f"{base.__name__}.{name} changed"


def test_the_worker_classes_extend_kombus_redis_transport() -> None:
    assert issubclass(transport.QoS, kombu_redis.QoS)
    assert issubclass(transport.Channel, kombu_redis.Channel)
    assert issubclass(transport.SentinelChannel, kombu_redis.SentinelChannel)
    assert transport.Transport.Channel is transport.Channel
    assert transport.SentinelTransport.Channel is transport.SentinelChannel
    assert transport.Channel.QoS is transport.QoS


# What the overrides call or read on kombu's objects, and the kombu source that must hold it.
QOS_READS = ["self._vrestore_count", "def pipe_or_acquire", "def unacked_key",
             "def unacked_index_key"]  # fmt: skip
VIRTUAL_QOS_READS = ["self._delivered", "def append", "def ack"]
CHANNEL_READS = [
    "from_transport_options", "self._queue_cycle.consume(", "self.active_queues",
    "self.priority_steps", "self.global_keyprefix", "def _q_for_pri(self, queue, pri)",
    "self._in_poll = ", "self._brpop_sent_at = ", "self.brpop_timeout",
    "self.client.connection.send_command(", "self.client.parse_response(",
    "self.connection_errors", "self.connection._deliver(", "self._flush_brpop_reauth()",
    "def conn_or_acquire", "def _connparams(self, asynchronous=False)",
]  # fmt: skip
SENTINEL_READS = [
    "from_transport_options", "master_name", "min_other_sentinels", "sentinel_kwargs",
    "self._sentinel_manager", "self._async_sentinel_manager",
]  # fmt: skip


@pytest.mark.parametrize(
    ("where", "read"),
    [(kombu_redis.QoS, read) for read in QOS_READS]
    + [(virtual.QoS, read) for read in VIRTUAL_QOS_READS]
    + [(kombu_redis.Channel, read) for read in CHANNEL_READS]
    + [(kombu_redis.SentinelChannel, read) for read in SENTINEL_READS],
)
def test_what_the_overrides_read_is_still_in_kombu(where: type, read: str) -> None:
    assert read in source(where), f"kombu's {where.__name__} no longer has {read!r}"


def test_kombus_take_is_still_the_brpop_the_override_replaces() -> None:
    """`_brpop_start` sends BRPOP and `_brpop_read` parses its reply and delivers it, ending
    with `_in_poll = None` and the re-auth flush: the override does the same with BLMOVE."""
    kombus = vars(kombu_redis.Channel)
    start, read = source(kombus["_brpop_start"]), source(kombus["_brpop_read"])
    assert "'BRPOP'" in start
    assert "'BRPOP'" in read
    assert "self._in_poll = None" in read
    assert "self._flush_brpop_reauth()" in read


def test_the_restore_sweep_still_counts_its_rounds_and_restores_with_a_mutex() -> None:
    restore_visible = source(kombu_redis.QoS.restore_visible)
    assert "self._vrestore_count += 1" in restore_visible
    assert "MutexHeld" in restore_visible
    assert parameters(kombu_redis.Mutex) == [
        ("client", inspect.Parameter.empty),
        ("name", inspect.Parameter.empty),
        ("expire", inspect.Parameter.empty),
    ]
    assert issubclass(kombu_redis.MutexHeld, Exception)


def test_the_virtual_transport_still_delivers_by_queue_name() -> None:
    assert parameters(virtual.Transport._deliver) == [
        ("message", inspect.Parameter.empty),
        ("queue", inspect.Parameter.empty),
    ]


def test_a_message_body_is_still_decoded_by_the_codec_the_entry_check_tries_first() -> None:
    """The entry check refuses a body kombu's base64 codec refuses: kombu decodes it in
    `Message.__init__`, before any check of the worker's, and a refusal there stops the worker."""
    assert "channel.decode_body(body" in source(virtual.Message.__init__)
    assert "self.codecs.get(encoding).decode" in source(virtual.Channel.decode_body)
    assert virtual.Channel.codecs["base64"] is transport.BASE64


def test_the_transport_options_the_worker_sets_are_still_read_by_kombu() -> None:
    read = kombu_redis.Channel.from_transport_options
    options = transport_options_of_the_worker()
    assert options <= set(read), options - set(read)


def transport_options_of_the_worker() -> set[str]:
    """The kombu options worker/app.py sets (not the worker's own, which its Channel adds)."""
    from worker.app import transport_options
    from worker.settings import Settings

    own = {"max_entry_bytes"}
    return set(transport_options(Settings.model_construct())) - own  # the defaults


def test_what_the_drain_on_shutdown_reads_is_still_there() -> None:
    """worker/steps/drain.py runs the event loop by hand until the pool's job cache is empty."""
    assert "def run_once" in source(Hub)
    assert "self._ready = " in source(Hub.__init__)
    assert "self._cache = " in source(billiard.pool.Pool.__init__)
    assert hasattr(state, "should_stop")
    assert hasattr(state, "active_requests")
