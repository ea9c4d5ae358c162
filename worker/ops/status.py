"""`account-reset status`: the figures an operator gets from `rq info` or `celery status`
(issue 16, finding 13): each queue's depth, the messages taken and not yet acknowledged, the dead
letters, the audit consumer groups of the events stream with their lag, and the live workers.

Every figure is read with the Redis user's own rights: one this user may not read is None and
named in `no_permission`, so a producer or an auditor sees what it may see instead of an error.
One whose key holds another type (a QUEUE that names a string) is None too, and `unavailable`
says why in a line. Names come from producers and the nodes that answer: the tables show them as
text, controls escaped (client/terminal_text.py).
It needs no worker secret: a producer's or an auditor's settings, the name of the dead letters'
stream and, where workers verify signatures, the signing settings its broadcast needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import redis
from celery import Celery
from kombu.utils.url import maybe_sanitize_url
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Column, Table

from client.redis_clients import broker_connection, redis_client
from client.settings import ClientSettings
from client.signing import sign_messages
from client.terminal_text import untrusted
from worker import keys
from worker.settings import Settings

NO_PERMISSION = "no permission"
UNAVAILABLE = "unavailable"
# A Redis that accepts connections and never answers ends the view, in one line.
REDIS_TIMEOUT_S = 10.0
_WORKER_FIELDS = Settings.model_fields

T = TypeVar("T")


class StatusSettings(ClientSettings):
    """A producer's or an auditor's settings, and two of the worker's: its dead letters' stream,
    and the certificates that verify the workers' signed answers."""

    dead_letters_key: str = Field(
        default=_WORKER_FIELDS["dead_letters_key"].default,
        description=_WORKER_FIELDS["dead_letters_key"].description,
    )
    signing_cert_store: str | None = Field(
        default=None, description=_WORKER_FIELDS["signing_cert_store"].description
    )


class QueueFigures(BaseModel):
    name: str
    # Waiting to be taken.
    depth: int | None
    # Taken (BLMOVE into `<queue>:reserved`) and not yet recorded as unacknowledged: an instant
    # for a running worker; left by a worker that died then, until the restore sweep.
    reserved: int | None
    # Delivered to a worker and not yet acknowledged (kombu's `<queue>:unacked` hash).
    unacknowledged: int | None


class ConsumerGroup(BaseModel):
    name: str
    consumers: int
    # Delivered to one of its consumers and not yet acknowledged (XACK).
    pending: int
    # Entries not yet delivered to the group; None when Redis cannot tell (XINFO GROUPS).
    lag: int | None
    last_delivered_id: str


class EventsFigures(BaseModel):
    stream: str
    length: int | None
    groups: list[ConsumerGroup] | None


class DeadLetterFigures(BaseModel):
    key: str
    count: int | None
    newest_at: datetime | None


class WorkerNode(BaseModel):
    name: str
    queues: list[str]


class LiveWorkers(BaseModel):
    # How "live" was determined, in words.
    how: str
    nodes: list[WorkerNode] | None


class Status(BaseModel):
    """What `account-reset status --json` prints: one object, these fields."""

    broker: str
    events_redis: str
    queues: list[QueueFigures]
    dead_letters: DeadLetterFigures
    events: EventsFigures
    workers: LiveWorkers
    # The figures this Redis user may not read ("queues.<name>.reserved", "workers", ...).
    no_permission: list[str]
    # The figures whose key holds another type, each with why ("<key> is a string, not a list").
    unavailable: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Key:
    """The key a figure reads, and the type of value the figure needs it to hold."""

    client: redis.Redis
    name: str
    kind: str

    def wrong_type(self) -> str:
        """One line: what the key holds instead (where this user may ask Redis its TYPE)."""
        try:
            found = self.client.type(self.name)
        except redis.RedisError:
            return f"{self.name} is not a {self.kind}"
        shown = found.decode() if isinstance(found, bytes) else str(found)
        return f"{self.name} is a {shown}, not a {self.kind}"


@dataclass
class _Reader:
    """Reads figures, noting those this Redis user may not read, and those whose key holds
    another type (WRONGTYPE), instead of failing: the other figures are still worth seeing."""

    refused: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def read(self, name: str, figure: Callable[[], T], key: _Key | None = None) -> T | None:
        try:
            return figure()
        except redis.exceptions.NoPermissionError:
            self.refused.append(name)
            return None
        except redis.ResponseError as error:
            if key is None or not str(error).startswith("WRONGTYPE"):
                raise
            self.unavailable[name] = key.wrong_type()
            return None


def gather_status(settings: StatusSettings, *, timeout_s: float) -> Status:
    """Every figure, read now; a Redis out of reach raises redis.ConnectionError."""
    timeouts = {"socket_connect_timeout": REDIS_TIMEOUT_S, "socket_timeout": REDIS_TIMEOUT_S}
    broker, events = (
        redis_client(url, settings.redis_options, decode_responses=True, **timeouts)
        for url in (settings.broker_url, settings.events_redis_url)
    )
    reader = _Reader()
    queues = [settings.queue, *([settings.sessions_queue] if settings.sessions_queue else [])]
    try:
        status = Status(
            broker=_shown_url(settings.broker_url),
            events_redis=_shown_url(settings.events_redis_url),
            queues=[_queue_figures(broker, queue, reader) for queue in queues],
            dead_letters=_dead_letter_figures(events, settings.dead_letters_key, reader),
            events=_events_figures(events, settings.events_stream, reader),
            workers=_live_workers(settings, queues, timeout_s, reader),
            no_permission=reader.refused,
            unavailable=reader.unavailable,
        )
    finally:
        broker.close()
        events.close()
    return status


def _queue_figures(client: redis.Redis, queue: str, reader: _Reader) -> QueueFigures:
    waiting, reserved = _Key(client, queue, "list"), _Key(client, keys.reserved(queue), "list")
    unacked = _Key(client, keys.unacked(queue), "hash")
    return QueueFigures(
        name=queue,
        depth=reader.read(f"queues.{queue}.depth", lambda: client.llen(waiting.name), waiting),
        reserved=reader.read(
            f"queues.{queue}.reserved", lambda: client.llen(reserved.name), reserved
        ),
        unacknowledged=reader.read(
            f"queues.{queue}.unacknowledged", lambda: client.hlen(unacked.name), unacked
        ),
    )


def _dead_letter_figures(client: redis.Redis, key: str, reader: _Reader) -> DeadLetterFigures:
    newest = reader.read(
        "dead_letters",
        lambda: cast(list[Any], client.xrevrange(key, count=1)),
        _Key(client, key, "stream"),
    )
    return DeadLetterFigures(
        key=key,
        count=None if newest is None else int(client.xlen(key)),
        newest_at=_entry_time(str(newest[0][0])) if newest else None,
    )


def _events_figures(client: redis.Redis, stream: str, reader: _Reader) -> EventsFigures:
    stream_key = _Key(client, stream, "stream")
    return EventsFigures(
        stream=stream,
        length=reader.read("events.length", lambda: client.xlen(stream), stream_key),
        groups=reader.read("events.groups", lambda: _groups(client, stream), stream_key),
    )


def _groups(client: redis.Redis, stream: str) -> list[ConsumerGroup]:
    try:
        replies: list[dict[str, Any]] = client.xinfo_groups(stream)
    except redis.exceptions.NoPermissionError:
        raise
    except redis.ResponseError as error:  # no stream yet: no group either
        if "no such key" in str(error):
            return []
        raise
    return [
        ConsumerGroup(
            name=group["name"],
            consumers=group["consumers"],
            pending=group["pending"],
            lag=group.get("lag"),  # Redis 7 and later
            last_delivered_id=group["last-delivered-id"],
        )
        for group in replies
    ]


def _live_workers(
    settings: StatusSettings, queues: list[str], timeout_s: float, reader: _Reader
) -> LiveWorkers:
    how = (
        f"nodes that answered Celery's remote control (inspect active_queues) within"
        f" {timeout_s:g} s and consume one of these queues"
    )
    answers = reader.read("workers", lambda: _active_queues(settings, timeout_s))
    if answers is None:
        return LiveWorkers(how=how, nodes=None)
    return LiveWorkers(how=how, nodes=live_nodes(answers, queues))


def live_nodes(answers: Any, queues: list[str]) -> list[WorkerNode]:
    """The nodes whose answer to `inspect active_queues` names one of `queues`, by name.

    Any client of the broker may answer, with any JSON (finding F4: `["not-a-dict"]` was an
    AttributeError). Items not shaped as Celery's (a dict whose "name" is text) are skipped; a
    node whose answer then names none of `queues` is not listed, as a node consuming other
    queues is not: it is no worker of these that this view can vouch for.
    """
    if not isinstance(answers, dict):
        return []
    named = {name: reply for name, reply in answers.items() if isinstance(name, str)}
    return [
        WorkerNode(name=name, queues=sorted(consumed))
        for name, reply in sorted(named.items())
        if (consumed := _queue_names(reply)) & set(queues)
    ]


def _queue_names(reply: Any) -> set[str]:
    """The queue names in one node's answer: a list of dicts, each with a "name"."""
    if not isinstance(reply, list):
        return set()
    return {
        name
        for queue in reply
        if isinstance(queue, dict) and isinstance(name := queue.get("name"), str)
    }


def _active_queues(settings: StatusSettings, timeout_s: float) -> dict[str, Any]:
    """Each node's answer to a remote-control broadcast: workers run without gossip and mingle,
    but answer Celery's remote control (what `celery inspect` and Flower use)."""
    app = Celery("account-reset-status", set_as_current=False)
    # kombu's own transport, as producers use it: TLS verified, Sentinel followed.
    broker = broker_connection(settings.broker_url, settings.redis_options)
    app.conf.update(
        broker_url=broker.kombu_url,
        broker_use_ssl=broker.ssl or False,
        broker_transport_options={
            **_reply_transport_options(settings.queue),
            **broker.transport_options,
        },
        broker_connection_retry=False,
    )
    key_file, certificate_file = settings.signing_key_file, settings.signing_certificate_file
    if key_file is not None and certificate_file is not None:
        # A worker that verifies signatures refuses unsigned remote control, and dead-letters it;
        # its answers are signed, and verified here against the store.
        store = Path(settings.signing_cert_store) if settings.signing_cert_store else None
        sign_messages(app, key_file=key_file, certificate_file=certificate_file, cert_store=store)
    try:
        # `inspect().active_queues()` is this broadcast, its replies merged by Celery's
        # `flatten_reply`, which fails on a reply that is not a mapping: merged here instead.
        replies = app.control.broadcast("active_queues", reply=True, timeout=timeout_s)
    finally:
        app.close()
    return _by_node(replies)


def _by_node(replies: Any) -> dict[str, Any]:
    """The replies, each `{node name: answer}`, as one mapping; a reply of another shape (any
    client of the broker may reply) is skipped."""
    answers: dict[str, Any] = {}
    for reply in replies or []:
        if isinstance(reply, dict):
            answers.update(reply)
    return answers


def _reply_transport_options(queue: str) -> dict[str, Any]:
    """Keys the worker's ACL user may use: one per reply queue (`*.celery.pidbox`), and for the
    restore sweep kombu runs on any consumer, the queue's own bookkeeping, as a worker's sweep
    (kombu's visibility timeout, an hour, is longer than a worker's: it puts back nothing a
    worker's sweep would not)."""
    return {
        "priority_steps": [0],
        "unacked_key": keys.unacked(queue),
        "unacked_index_key": keys.unacked_index(queue),
        "unacked_mutex_key": keys.unacked_mutex(queue),
    }


def _entry_time(entry_id: str) -> datetime:
    """A stream entry id's time: its first part is milliseconds since the epoch."""
    return datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, tz=UTC)


def _shown_url(url: str) -> str:
    """The URL without its password (each part of a sentinel:// list)."""
    return ";".join(str(maybe_sanitize_url(part)) for part in url.split(";"))


def render(status: Status, console: Console) -> None:
    """The status as tables, for a terminal; a figure this user may not read says so, one whose
    key holds another type says "unavailable", and why, last. Every name is shown as text,
    controls escaped: a group's or a node's name is whoever made it's."""
    say = partial(_say, console)
    figure = partial(_figure, status)
    say(f"broker {status.broker}, events on {status.events_redis}")
    queues = _table("queue", "waiting", "reserved", "unacknowledged", title="queues")
    for queue in status.queues:
        named = f"queues.{queue.name}"
        _add_row(
            queues, queue.name, figure(f"{named}.depth", queue.depth),
            figure(f"{named}.reserved", queue.reserved),
            figure(f"{named}.unacknowledged", queue.unacknowledged),
        )  # fmt: skip
    console.print(queues)
    letters = status.dead_letters
    newest = f", newest {letters.newest_at:%Y-%m-%d %H:%M:%S} UTC" if letters.newest_at else ""
    say(f"dead letters ({letters.key}): {figure('dead_letters', letters.count)}{newest}")
    _render_events(status.events, console, figure)
    workers = status.workers
    say(f"live workers ({workers.how}): {figure('workers', _count(workers.nodes))}")
    if workers.nodes:
        nodes = _table("node", "queues", title="live workers")
        for node in workers.nodes:
            _add_row(nodes, node.name, ", ".join(node.queues))
        console.print(nodes)
    for note in dict.fromkeys(status.unavailable.values()):  # one line a key, in order
        say(f"{UNAVAILABLE}: {note}")


def _render_events(events: EventsFigures, console: Console, figure: _Figure) -> None:
    _say(
        console,
        f"events ({events.stream}): {figure('events.length', events.length)},"
        f" consumer groups: {figure('events.groups', _count(events.groups))}",
    )
    if not events.groups:
        return
    groups = _table("group", "consumers", "pending", "lag", "last delivered", title="groups")
    for group in events.groups:
        lag = "unknown" if group.lag is None else str(group.lag)
        _add_row(
            groups, group.name, str(group.consumers), str(group.pending), lag,
            group.last_delivered_id,
        )  # fmt: skip
    console.print(groups)


def _say(console: Console, line: str) -> None:
    console.print(untrusted(line))  # names and URLs are text, never markup


def _count(items: list[Any] | None) -> int | None:
    return None if items is None else len(items)


def _table(*headers: str, title: str) -> Table:
    # Folded, never cut: a node name or an entry id is what an operator copies.
    return Table(*(Column(header, overflow="fold") for header in headers), title=title)


def _add_row(table: Table, *cells: str) -> None:
    table.add_row(*map(untrusted, cells))


def _figure(status: Status, name: str, value: int | None) -> str:
    """The figure `name`, or why it is missing."""
    if value is not None:
        return str(value)
    return UNAVAILABLE if name in status.unavailable else NO_PERMISSION


_Figure = Callable[[str, int | None], str]
