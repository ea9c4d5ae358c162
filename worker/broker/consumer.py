"""The worker's consumer: Celery's, plus a dead letter for every message it refuses.

Celery acknowledges (or rejects) a poison message and logs it, so it never blocks the queue or
loops; this keeps a redacted copy for operators first, and answers a producer that named one
of the two commands with an `invalid-payload` event. Should the dead letter not be written
(Redis unreachable), the message is left unacknowledged and comes back.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed, DecodeError
from typing_extensions import override

from schemas import COMMANDS, ExceptionCode, ResetSessionKey
from tasks.pipeline import command_id_of
from worker import bootstrap
from worker.broker.checks import MessageTooLarge, decoded_body
from worker.broker.signing import Unverified
from worker.streams.dead_letters import Reason, dead_letter_and_answer

log = logging.getLogger(__name__)

COMMAND_NAMES = frozenset(COMMANDS)


class DeadLetteringConsumer(Consumer):
    @override
    def update_strategies(self) -> None:
        """Only the two commands run. Celery's built-in tasks (`celery.accumulate`, `celery.map`,
        `celery.chord_unlock`, ...) are registered in every app; a message naming one is an
        unknown task here, dead-lettered like any other."""
        super().update_strategies()
        strategies: dict[str, Any] = self.strategies  # type: ignore[attr-defined]  # no stub
        for name in list(strategies):
            if name not in node_commands():
                del strategies[name]

    @override
    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._dead_letter(message, Reason.INVALID_MESSAGE, "no task name in the headers")
        super().on_unknown_message(body, message)

    @override
    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        unverified = _unverified(message)
        if unverified is not None:
            self._dead_letter(message, Reason.UNVERIFIED, str(unverified), answer=False)
        else:
            kwargs = _kwargs(message)
            self._dead_letter(message, Reason.UNKNOWN_TASK, "no such task", kwargs=kwargs)
        super().on_unknown_task(body, message, exc)

    @override
    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        # The entry is within MAX_ENTRY_BYTES (worker/broker/transport.py), so reading its body
        # for the producer's command_id costs a bounded amount, even when it is over the body
        # limit; a body that is not JSON has none, and the answer goes under the task id.
        if isinstance(exc, Unverified):
            # Unauthenticated: its body is never read, and it gets no answer, which would let
            # anyone who can push publish a failure under any command_id.
            self._dead_letter(message, Reason.UNVERIFIED, str(exc), answer=False)
            super().on_invalid_task(body, message, exc)
            return
        kwargs = None if isinstance(exc, ContentDisallowed) else _kwargs(message)
        if isinstance(exc, MessageTooLarge):
            self._dead_letter(message, Reason.TOO_LARGE, str(exc), kwargs=kwargs)
        elif isinstance(exc, ContentDisallowed):
            refused = f"content type {str(message.content_type)[:100]!r} is not accepted"
            self._dead_letter(message, Reason.INVALID_MESSAGE, refused)
        elif isinstance(exc, InvalidTaskError):
            self._dead_letter(message, Reason.INVALID_MESSAGE, str(exc), kwargs=kwargs)
        else:
            self._dead_letter(message, Reason.INVALID_MESSAGE, type(exc).__name__, kwargs=kwargs)
        super().on_invalid_task(body, message, exc)

    @override
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        # A message without a task header is decoded by Celery itself (protocol 1), unguarded.
        # With signing, so is an unsigned remote-control message (`celery inspect`, Flower).
        refused = exc.args[0] if isinstance(exc, DecodeError) and exc.args else None
        if isinstance(refused, Unverified):
            self._dead_letter(message, Reason.UNVERIFIED, str(refused), answer=False)
        elif isinstance(exc, ContentDisallowed) and bootstrap.settings().signing:
            unsigned = f"not signed (content type {str(message.content_type)[:100]!r})"
            self._dead_letter(message, Reason.UNVERIFIED, unsigned, answer=False)
        else:
            detail = f"body does not decode ({type(exc).__name__})"
            self._dead_letter(message, Reason.UNDECODABLE, detail)
        super().on_decode_error(message, exc)

    def _dead_letter(
        self, message: Any, reason: Reason, detail: str, *, kwargs: Any = None, answer: bool = True
    ) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        task, task_id = _text_or_none(headers.get("task")), _text_or_none(headers.get("id"))
        command_id = None
        if answer and task in COMMAND_NAMES and task_id is not None:
            # The producer named one of the commands: it gets an answer on the stream.
            command_id = command_id_of(kwargs if isinstance(kwargs, dict) else {}, task_id)
        parts = bootstrap.runtime()
        dead_letter_and_answer(
            parts.dead_letters,
            parts.processor.events,
            reason=reason,
            detail=detail,
            task=task,
            task_id=task_id,
            kwargs=kwargs,
            hostname=self.hostname,
            answer=None if command_id is None else ExceptionCode.INVALID_PAYLOAD,
            command_id=command_id,
        )


def node_commands() -> frozenset[str]:
    """The commands this node runs: a sessions node runs revocations alone, so a password
    reset (bcrypt) sent to its queue cannot hold one up; it is dead-lettered, retryable."""
    if bootstrap.settings().node_role == "sessions":
        return frozenset({ResetSessionKey.name})
    return COMMAND_NAMES


def _kwargs(message: Any) -> Any:
    """The keyword arguments of a decodable (with signing: verified) protocol 2 body, else None."""
    try:
        body = decoded_body(message, bootstrap.settings())
    except (Exception, RecursionError):  # any body that does not decode has no kwargs to keep
        return None
    if isinstance(body, list | tuple) and len(body) == 3 and isinstance(body[1], dict):
        return body[1]
    return None


def _unverified(message: Any) -> Unverified | None:
    """Why a message is refused for its signature, when signing is on and it is."""
    if not bootstrap.settings().signing:
        return None
    try:
        decoded_body(message, bootstrap.settings())
    except Unverified as refused:
        return refused
    except (Exception, RecursionError):  # verified, but the body itself is at fault
        return None
    return None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
