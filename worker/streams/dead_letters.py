"""Dead letters: commands the worker could not process, kept for operators, never a secret.

A dead letter holds the identifiers of a command in clear and every other field sealed with
the payload key (or withheld, without one), so a retry can rebuild the command exactly, with
the same command_id, while Redis never holds a plaintext secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import redis
from pydantic import BaseModel, ConfigDict, Field

from schemas import CommandOutcome, ExceptionCode
from schemas.commands import is_storable, storable
from schemas.display import DISPLAYABLE_FIELDS, MAX_DISPLAYED_LENGTH
from schemas.fields import COMMAND_ID, SEALABLE_FIELDS, spellings
from worker.ops.metrics import PROMETHEUS, Observer
from worker.security.sealing import Sealer
from worker.streams.publisher import EventStream

log = logging.getLogger(__name__)

LETTER_FIELD = "letter"
# Field names that are shown as names (their values never are); any other name is a
# producer's own text and could be anything, so it is listed as UNNAMED_FIELD.
KNOWN_FIELDS = DISPLAYABLE_FIELDS | spellings(*SEALABLE_FIELDS)
UNNAMED_FIELD = "(unrecognised field)"
MAX_DETAIL_LENGTH = 200


class Reason(StrEnum):
    RETRIES_EXHAUSTED = "retries-exhausted"
    INTERNAL_FAULT = "internal-fault"
    UNKNOWN_TASK = "unknown-task"
    INVALID_MESSAGE = "invalid-message"
    UNDECODABLE = "undecodable"
    TOO_LARGE = "too-large"
    # Message signing on: not signed by a trusted certificate (the detail says how).
    UNVERIFIED = "unverified"


# Reasons a retry can cure: the fault was outside the message.
RETRYABLE_REASONS = frozenset(
    {Reason.RETRIES_EXHAUSTED, Reason.INTERNAL_FAULT, Reason.UNKNOWN_TASK}
)


class DeadLetter(BaseModel):
    """One command the worker gave up on, and why."""

    model_config = ConfigDict(frozen=True)

    letter_id: str = ""
    reason: Reason
    detail: str
    # What happened, in fixed words ("database is read-only"), where `detail` names a class.
    cause: str | None = None
    task: str | None
    task_id: str | None
    command_id: str | None
    accountid: str | None = None
    # Identifiers in clear; every other field sealed together in one token, or withheld.
    fields: dict[str, str | None] = Field(default_factory=dict)
    sealed: str | None = None
    sealed_fields: list[str] = Field(default_factory=list)
    withheld_fields: list[str] = Field(default_factory=list)
    has_payload: bool = False
    retries: int = 0
    hostname: str | None = None
    dead_lettered_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def retryable(self) -> bool:
        return (
            self.reason in RETRYABLE_REASONS
            and self.task is not None
            and self.has_payload
            and not self.withheld_fields
        )

    def shown(self) -> dict[str, Any]:
        """What an operator sees: everything but the sealed token."""
        return {**self.model_dump(mode="json", exclude={"sealed"}), "retryable": self.retryable}


def sealed_letter(
    *,
    reason: Reason,
    detail: str,
    task: str | None,
    task_id: str | None,
    kwargs: Any,
    sealer: Sealer | None,
    retries: int = 0,
    hostname: str | None = None,
    cause: str | None = None,
) -> DeadLetter:
    """A dead letter for a message; `kwargs` is its payload, or None when it was not read."""
    payload = kwargs if isinstance(kwargs, dict) else {}
    clear = {k: v for k, v in payload.items() if _displayable(k, v)}
    hidden = {k: v for k, v in payload.items() if k not in clear}
    names = sorted({k if k in KNOWN_FIELDS else UNNAMED_FIELD for k in hidden})
    sealed = sealer.seal(hidden) if sealer is not None and hidden else None
    command_id = clear.get(COMMAND_ID) or _shown(task_id, MAX_DISPLAYED_LENGTH)
    return DeadLetter(
        reason=reason,
        detail=_shown(detail, MAX_DETAIL_LENGTH) or "",
        cause=cause,
        task=_shown(task, MAX_DISPLAYED_LENGTH),
        task_id=_shown(task_id, MAX_DISPLAYED_LENGTH),
        command_id=command_id,
        accountid=clear.get("accountid"),
        fields=clear,
        sealed=sealed,
        sealed_fields=names if sealed else [],
        withheld_fields=[] if sealed else names,
        has_payload=isinstance(kwargs, dict),
        retries=retries,
        hostname=hostname,
    )


def _displayable(key: Any, value: Any) -> bool:
    if key not in DISPLAYABLE_FIELDS:
        return False
    if value is None:
        return True
    return isinstance(value, str) and len(value) <= MAX_DISPLAYED_LENGTH and is_storable(value)


def _shown(text: str | None, length: int) -> str | None:
    """Header text from the message, cut short and made storable (lone surrogates, NUL)."""
    return None if text is None else storable(text, length)


class NotRetryable(Exception):
    """The letter cannot be rebuilt into its command (see the reason it gives)."""


@dataclass(frozen=True)
class DeadLetterBox:
    """The dead letters, on a Redis stream: entry ids order them and name them."""

    client: redis.Redis
    key: str
    maxlen: int | None
    sealer: Sealer | None
    observer: Observer = PROMETHEUS

    def put(self, letter: DeadLetter) -> str:
        entry_id = self.client.xadd(
            self.key,
            {LETTER_FIELD: letter.model_dump_json(exclude={"letter_id"})},
            maxlen=self.maxlen,
            approximate=True,
        )
        self.observer.dead_lettered(reason=letter.reason.value)
        return _text(entry_id)

    def all(self, *, limit: int | None = None) -> list[DeadLetter]:
        entries = self.client.xrange(self.key, count=limit)
        return [_letter(entry_id, fields) for entry_id, fields in _entries(entries)]

    def get(self, letter_id: str) -> DeadLetter | None:
        try:
            entries = _entries(self.client.xrange(self.key, letter_id, letter_id))
        except redis.ResponseError:  # not a stream entry id
            return None
        return _letter(*entries[0]) if entries else None

    def drop(self, letter_id: str) -> bool:
        try:
            return bool(self.client.xdel(self.key, letter_id))
        except redis.ResponseError:
            return False

    def payload(self, letter: DeadLetter) -> dict[str, Any]:
        """The command's keyword arguments as first sent, with its command_id pinned."""
        if not letter.retryable:
            raise NotRetryable(_why_not(letter))
        hidden: dict[str, Any] = {}
        if letter.sealed is not None:
            if self.sealer is None:
                raise NotRetryable("its fields are sealed and ACCOUNT_RESET_PAYLOAD_KEY is unset")
            hidden = self.sealer.open(letter.sealed)
        # Pinning the command_id makes a repeated retry a replay, never a second effect.
        return {**letter.fields, **hidden, COMMAND_ID: letter.command_id}


def dead_letter_and_answer(
    box: DeadLetterBox,
    events: EventStream,
    *,
    reason: Reason,
    detail: str,
    task: str | None,
    task_id: str | None,
    kwargs: Any,
    hostname: str | None,
    answer: ExceptionCode | None,
    command_id: str | None = None,
    retries: int = 0,
    cause: str | None = None,
) -> str:
    """Keep a message the worker refused or gave up on, for operators; then, when `answer` is
    given, tell its producer: a failure event with that code under `command_id`, for the
    command `task` names. The letter goes first: should Redis not take it, nothing was said
    and the message, still unacknowledged, comes back. Returns the letter's id."""
    letter = sealed_letter(
        reason=reason, detail=detail, task=task, task_id=task_id, kwargs=kwargs,
        sealer=box.sealer, retries=retries, hostname=hostname, cause=cause,
    )  # fmt: skip
    letter_id = box.put(letter)
    log.error(
        "dead-lettered task %s id %s command_id %s (%s: %s) as %s",
        letter.task, letter.task_id, letter.command_id, reason.value, letter.detail, letter_id,
    )  # fmt: skip
    if answer is not None and task is not None and command_id is not None:
        events.publish(
            CommandOutcome.failure(command_id=command_id, command=task, code=answer, appid=None)
        )
    return letter_id


def _why_not(letter: DeadLetter) -> str:
    if letter.reason not in RETRYABLE_REASONS:
        return f"the message itself is at fault ({letter.reason.value})"
    if letter.withheld_fields:
        return "its secret fields were withheld (no ACCOUNT_RESET_PAYLOAD_KEY when it failed)"
    return "it holds no command to send"


def _entries(reply: Any) -> list[tuple[Any, Mapping[Any, Any]]]:
    return cast(list[tuple[Any, Mapping[Any, Any]]], reply or [])


def _letter(entry_id: Any, fields: Mapping[Any, Any]) -> DeadLetter:
    raw = fields.get(LETTER_FIELD.encode(), fields.get(LETTER_FIELD))
    letter = DeadLetter.model_validate_json(raw if raw is not None else "{}")
    return letter.model_copy(update={"letter_id": _text(entry_id)})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
