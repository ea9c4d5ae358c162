"""Redis ACL users for a deployment: who may do what with the worker's keys.

- producer: pushes commands onto the queue. It cannot read the queue, the result stream, the
  dead letters or anything else, so a compromised web tier cannot read other people's commands.
- worker: the queue and its bookkeeping, the result stream, dead letters, attempt counts, and
  Celery's event and control channels. Operators run the `failed` commands as this user.
- auditor: reads the result stream and keeps its consumer group's place; nothing else.

Printed by `account-reset redis-acl`; each line gets a password (`>secret`) before it is run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from worker import keys
from worker.settings import Settings

ROLES = ("producer", "worker", "auditor")
# In an ACL file, the default (unauthenticated) user may only answer a health check's PING.
DEFAULT_USER = "user default on nopass resetchannels -@all +ping +hello +auth"

CONNECT = ["+ping", "+hello", "+auth", "+client|setname", "+client|id"]
# What kombu's producer does to publish: declare the queue's binding, then push.
PRODUCE = ["+lpush", "+rpush", "+sadd", "+smembers", "+llen", "+multi", "+exec"]
AUDIT = [
    "+xread", "+xrange", "+xrevrange", "+xlen", "+xinfo", "+xreadgroup", "+xack", "+xpending",
    "+xclaim", "+xautoclaim", "+xgroup|create", "+xgroup|createconsumer", "+xgroup|delconsumer",
]  # fmt: skip
WORKER = [
    "+@read", "+@write", "+@list", "+@hash", "+@sortedset", "+@set", "+@stream", "+@string",
    "+@pubsub", "+@scripting", "+@transaction", "+@connection", "+@keyspace", "+@blocking",
    "-@dangerous", "+info", "+time",
]  # fmt: skip


def acl_rules(settings: Settings) -> dict[str, list[str]]:
    """ACL SETUSER rules per role, without a password."""
    queues = [settings.queue, *([settings.sessions_queue] if settings.sessions_queue else [])]
    binding = [f"~{key}" for queue in queues for key in keys.kombu_bindings(queue)]
    worker_keys = [
        f"~{pattern}"
        for pattern in keys.worker_key_patterns(
            queues=queues,
            events_stream=settings.events_stream,
            dead_letters=settings.dead_letters_key,
            attempts_prefix=settings.attempts_key_prefix,
        )
    ]
    return {
        "producer": [
            "-@all",
            *CONNECT,
            *PRODUCE,
            *(f"~{queue}" for queue in queues),
            *binding,
            "resetchannels",
        ],
        "worker": ["-@all", *CONNECT, *WORKER, *worker_keys, "&*"],
        "auditor": ["-@all", *CONNECT, *AUDIT, f"~{settings.events_stream}", "resetchannels"],
    }


def setuser_lines(settings: Settings, prefix: str = "account-reset") -> list[str]:
    return [
        " ".join(["ACL SETUSER", f"{prefix}-{role}", "reset", "on", *rules])
        for role, rules in acl_rules(settings).items()
    ]


def acl_file_lines(
    settings: Settings, passwords: Mapping[str, str], prefix: str = "account-reset"
) -> list[str]:
    """An ACL file (redis-server --aclfile): the three users with their passwords' SHA-256,
    so the file holds no password, and a default user that can do nothing but PING."""
    lines = [DEFAULT_USER]
    for role, rules in acl_rules(settings).items():
        digest = hashlib.sha256(passwords[role].encode()).hexdigest()
        lines.append(" ".join(["user", f"{prefix}-{role}", "reset", "on", f"#{digest}", *rules]))
    return lines
