"""Every Redis key the worker reads or writes, each with its reason.

The names are part of deployments: ACL patterns (worker/security/acl.py), dashboards and
operators' scripts name them, so a value here never changes.

Four of them are settings, named by the deployment (defaults in worker/settings.py):
- the queue, `ACCOUNT_RESET_QUEUE` ("account-reset"), and the revocations' own queue,
  `ACCOUNT_RESET_SESSIONS_QUEUE`: lists producers push commands onto;
- the events stream, `ACCOUNT_RESET_EVENTS_STREAM` ("account-reset:events"): every outcome,
  which producers and auditors read;
- the dead letters, `ACCOUNT_RESET_DEAD_LETTERS_KEY` ("account-reset:dead-letters"): a stream of
  what the worker refused or gave up on, for operators;
- the attempt counts' prefix, `ACCOUNT_RESET_ATTEMPTS_KEY_PREFIX` ("account-reset:code-attempts").

The rest are built from those here, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

# Per queue. Each bookkeeping key sits next to its queue (`<queue>:...`): deployments sharing a
# Redis stay apart, and one ACL pattern (`<queue>:*`) covers them.


def reserved(queue: str) -> str:
    """The list a message is moved into as it is taken (BLMOVE), until the same MULTI that
    records it as unacknowledged removes it: a worker dying in between loses nothing
    (worker/broker/transport.py)."""
    return f"{queue}:reserved"


def reserved_seen(queue: str) -> str:
    """When the restore sweep first saw each reserved message (by its SHA-256): one reserved
    longer than the visibility timeout belonged to a worker that died, and goes back."""
    return f"{reserved(queue)}:seen"


def reserved_mutex(queue: str) -> str:
    """One restore sweep of the reserved list at a time, over every worker."""
    return f"{reserved(queue)}:mutex"


def unacked(queue: str) -> str:
    """Kombu's hash of delivered, unacknowledged messages (delivery tag -> message)."""
    return f"{queue}:unacked"


def unacked_index(queue: str) -> str:
    """Kombu's sorted set of when each unacknowledged message was delivered: the restore sweep
    puts back those older than the visibility timeout."""
    return f"{queue}:unacked_index"


def unacked_mutex(queue: str) -> str:
    """One restore sweep of the unacknowledged messages at a time, over every worker."""
    return f"{queue}:unacked_mutex"


def chunk_sender(queue: str, command_id: str) -> str:
    """The delivery that sends an every_account run's message `command_id` (`<run id>#<n>`),
    so that two copies of the message before it do not both send it
    (worker/broker/chunk_senders.py)."""
    return f"{queue}:chunk-sender:{command_id}"


def queue_bookkeeping(queue: str) -> tuple[str, ...]:
    """Every key the worker keeps next to a queue, the queue first."""
    return (
        queue,
        reserved(queue),
        reserved_seen(queue),
        reserved_mutex(queue),
        unacked(queue),
        unacked_index(queue),
        unacked_mutex(queue),
    )


def kombu_bindings(queue: str) -> tuple[str, str]:
    """The sets where kombu declares a queue's binding to its exchange: a producer writes them
    before it pushes, and they outlive the queue."""
    return f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"


# Kombu's bindings and Celery's remote-control (pidbox) exchanges, which `celery inspect` and
# Flower use: the worker's ACL user needs them.
KOMBU_KEYS_PATTERN = "_kombu.*"
PIDBOX_KEYS_PATTERN = "*.celery.pidbox"


# Attempts at reset codes (worker/security/attempts.py), all under the prefix so that one ACL
# pattern covers them. `named` values are HMACs: Redis never holds a source, code or hash.


def account_attempts(prefix: str, appid: str, accountid: str) -> str:
    """An account's count of wrong codes (the key earlier versions used)."""
    return f"{prefix}:{appid}:{accountid}"


def source_attempts(prefix: str, appid: str, named_source: str) -> str:
    """A source's count over every account of an appid."""
    return f"{prefix}:source:{appid}:{named_source}"


def appid_attempts(prefix: str, appid: str) -> str:
    """An appid's ceiling over all its accounts."""
    return f"{prefix}:appid:{appid}"


def delivery_decision(prefix: str, appid: str, command_id: str, named_guess: str) -> str:
    """One delivery's decision, so a retry of it is not counted again."""
    return f"{prefix}:delivery:{appid}:{command_id}:{named_guess}"


def attempts_pattern(prefix: str) -> str:
    return f"{prefix}:*"


# The dashboard's own keys, which the worker keeps up to date as the dashboard would.


def dashboard_cache(accountid: str) -> str:
    """The dashboard's storage cache entry of an account: it keys it by the bare accountid, and
    the entry goes once the account's sessions or password change."""
    return accountid


def dashboard_metrics(appid: str) -> str:
    """The dashboard's metrics hash of an appid (STORAGE_METRICS=redis), counter id -> count."""
    return f"{appid}/metrics"


COUNTED_MARKER_PREFIX = "account-reset:dashboard-metrics-counted"


def counted_marker(event_id: str) -> str:
    """On the dashboard's metrics Redis, "this event's counters were incremented": the relay
    and a replay may count an event again, and this keeps it to once."""
    return f"{COUNTED_MARKER_PREFIX}:{event_id}"


def worker_key_patterns(
    *, queues: Iterable[str], events_stream: str, dead_letters: str, attempts_prefix: str
) -> list[str]:
    """The ACL key patterns of the worker's user (without the `~`): the queues with their
    bookkeeping, kombu's bindings, Celery's control exchanges, then the worker's own keys."""
    queues = list(queues)
    return [
        *queues,
        *(f"{queue}:*" for queue in queues),
        KOMBU_KEYS_PATTERN,
        PIDBOX_KEYS_PATTERN,
        events_stream,
        dead_letters,
        attempts_pattern(attempts_prefix),
    ]
