"""Checks a message passes before Celery builds a task request from it.

Celery's own checks stop undecodable bodies and refused content types; these stop what would
otherwise reach the task, or steer the worker, from a message a producer wrote:

- an oversized body, and a body that is not protocol 2's `[args, kwargs, embed]`;
- anything attached to the command: callbacks, errbacks, a chain or a chord (the worker would
  send tasks where the message says), a group;
- headers that change how or when the command runs: `eta` (a security command runs now; only
  the worker's own retry, a few seconds ahead, may wait), `expires`, `timelimit`, `shadow`, a
  `retries` count beyond the worker's own.

With message signing on, a message not signed by a trusted certificate is refused first
(worker/broker/signing.py), and a signed command must carry its `command_id`.

The consumer dead-letters what they refuse and answers a command with `invalid-payload`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task
from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default

from schemas.fields import COMMAND_ID
from worker import bootstrap
from worker.broker.signing import verified_payload
from worker.settings import Settings

StrategyHandler = Callable[..., Any]

# How far ahead the worker's own retry may be scheduled, beyond its backoff cap (clock skew).
RETRY_ETA_ALLOWANCE_S = 5.0
MAX_TASK_ID_LENGTH = 200
EMBEDDED = ("callbacks", "errbacks", "chain", "chord")
# Headers that must be absent or empty: each would have the worker do more than the command.
NOT_ALLOWED = ("expires", "shadow", "group", "group_index", "stamped_headers", "stamps")
TEXT_HEADERS = ("root_id", "parent_id", "origin", "lang", "argsrepr", "kwargsrepr")


class MessageTooLarge(InvalidTaskError):
    """A body over `ACCOUNT_RESET_MAX_MESSAGE_BYTES`; it is never decoded."""


class MalformedBody(InvalidTaskError):
    """A body that decodes but is not a protocol 2 task body with keyword arguments."""


class RefusedHeaders(InvalidTaskError):
    """Headers that would steer the worker: attachments, a schedule, limits, another name."""


def check_message(message: Any, *, max_bytes: int, settings: Settings | None = None) -> None:
    size = len(message.body or b"")
    if size > max_bytes:
        raise MessageTooLarge(f"body of {size} bytes is over the limit of {max_bytes}")
    settings = settings or bootstrap.settings()
    # With signing, a message no trusted certificate signed is refused before anything of it
    # (headers included) is acted on.
    body = decoded_body(message, settings)
    check_headers(message.headers, settings)
    if not (isinstance(body, list | tuple) and len(body) == 3):
        raise MalformedBody("body is not [args, kwargs, embed]")
    args, kwargs, embed = body
    if not isinstance(args, list | tuple):
        raise MalformedBody("args is not an array")
    if not isinstance(kwargs, dict):
        raise MalformedBody("kwargs is not an object")
    if not isinstance(embed, dict | None):
        raise MalformedBody("embed is not an object")
    attached = [name for name in EMBEDDED if (embed or {}).get(name)]
    if attached:
        raise RefusedHeaders(f"the command carries {', '.join(attached)}: nothing may be attached")
    if settings.signing and not _carries_a_command_id(kwargs):
        # The headers are not signed: the task id, the default command_id, is the producer's
        # word alone, so a captured body sent again under a new one would apply again.
        raise MalformedBody("a signed command must carry its command_id in its kwargs")


def decoded_body(message: Any, settings: Settings) -> Any:
    """The body by Celery's decoder, which refuses content types other than those accepted;
    with signing, only once a trusted certificate's signature holds (else Unverified)."""
    if settings.signing_cert_store is None:
        return message.payload
    return verified_payload(message)


def _carries_a_command_id(kwargs: dict[str, Any]) -> bool:
    command_id = kwargs.get(COMMAND_ID)
    return isinstance(command_id, str) and bool(command_id)


# Celery's protocol 2 headers (and kombu's mark of a restored message). Celery builds a task
# request from every header it finds, so any other one could set a request field (callbacks,
# a reply queue): others are dropped before Celery sees them.
KNOWN_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
    "replaced_task_nesting", "stamped_headers", "stamps", "redelivered",
})  # fmt: skip


def check_headers(headers: Any, settings: Settings) -> None:
    """Refuse what would steer the worker; then drop every header Celery does not define."""
    if not isinstance(headers, dict):
        raise RefusedHeaders("headers are not an object")
    _check_nothing_attached(headers)
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_TASK_ID_LENGTH:
        raise RefusedHeaders(f"the task id is not text of 1 to {MAX_TASK_ID_LENGTH} characters")
    if any(not isinstance(headers.get(name), str | None) for name in TEXT_HEADERS):
        raise RefusedHeaders("a header that names or describes the task is not text")
    _check_timelimit(headers.get("timelimit"))
    retries = headers.get("retries") or 0
    if type(retries) is not int or not 0 <= retries <= settings.max_retries:
        raise RefusedHeaders(f"header retries is not a count from 0 to {settings.max_retries}")
    if headers.get("eta") is not None:
        _check_eta(headers["eta"], retries, settings)
    for name in [name for name in headers if name not in KNOWN_HEADERS]:
        del headers[name]


def _check_nothing_attached(headers: dict[str, Any]) -> None:
    # Celery reads callbacks and chains from the headers as well as from the body's embed.
    attached = [name for name in EMBEDDED if headers.get(name)]
    if attached:
        raise RefusedHeaders(f"the command carries {', '.join(attached)}: nothing may be attached")
    present = [name for name in NOT_ALLOWED if headers.get(name) not in (None, [], {})]
    if present:
        raise RefusedHeaders(f"header {present[0]} is not accepted")


def _check_timelimit(timelimit: Any) -> None:
    """A producer's time limit would kill the pool process mid-transaction."""
    if timelimit is None:
        return
    if not isinstance(timelimit, list | tuple) or any(limit is not None for limit in timelimit):
        raise RefusedHeaders("header timelimit is not accepted")


def _check_eta(eta: Any, retries: int, settings: Settings) -> None:
    """Only the worker's own retry is scheduled, and never further than its backoff cap."""
    latest = settings.retry_backoff_max_s + RETRY_ETA_ALLOWANCE_S
    try:
        when = datetime.fromisoformat(eta) if isinstance(eta, str) else None
    except ValueError:
        when = None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ahead = None if when is None else (when - datetime.now(UTC)).total_seconds()
    if retries == 0 or ahead is None or ahead > latest:
        raise RefusedHeaders(
            "header eta is not accepted: a command runs when it arrives (a retry waits at"
            f" most {latest:.0f} s)"
        )


# What a malformed header does inside Celery's own request building (an eta of the wrong type,
# a field it indexes): it must not reach the consumer, which would stop.
REQUEST_BUILDING_FAULTS = (TypeError, ValueError, OverflowError, KeyError, AttributeError,
                           IndexError, RecursionError)  # fmt: skip


def guarded_strategy(task: Task[Any, Any], app: Celery, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy, behind `check_message`."""
    handle = default(task, app, consumer, **kwargs)
    settings = bootstrap.settings()

    def task_message_handler(message: Any, *args: Any, **kw: Any) -> Any:
        check_message(message, max_bytes=settings.max_message_bytes, settings=settings)
        try:
            return handle(message, *args, **kw)
        except REQUEST_BUILDING_FAULTS as exc:
            raise MalformedBody(
                f"Celery could not read the message ({type(exc).__name__})"
            ) from None

    return task_message_handler
