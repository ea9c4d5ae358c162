"""The result event: one per command outcome, published on the events stream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from schemas.codes import ExceptionCode

SCHEMA_VERSION = 1
# The stream entry's one field, holding the event's JSON.
EVENT_FIELD = "event"


class OutcomeStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class BulkChunk(BaseModel):
    """What one message of a reset-session-keys run did: the accounts it reset, by id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The run's id (its first message's command_id) and this message's place in it.
    bulk_id: str
    chunk: int
    # The accounts whose sessions this message ended, in one transaction.
    accountids: list[str]
    # Listed accounts not reset: no such account in the appid, or deleted.
    not_reset: list[str] = Field(default_factory=list)
    # Accounts reset by the run up to and including this message (every_account runs).
    reset_so_far: int
    # The run is over: no message follows (always, for a listed chunk).
    done: bool


class CommandOutcome(BaseModel):
    """What happened to one command. Holds identifiers only, never a secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    command_id: str
    command: str
    status: OutcomeStatus
    code: ExceptionCode | None = None
    appid: str | None = None
    accountid: str | None = None
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    schema_version: int = SCHEMA_VERSION
    # reset-session-keys only: absent from every other event (not even null).
    bulk: BulkChunk | None = None

    @model_serializer(mode="wrap")
    def _without_absent_bulk(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("bulk") is None:
            data.pop("bulk", None)
        return data

    @classmethod
    def success(
        cls, *, command_id: str, command: str, appid: str, accountid: str | BulkChunk
    ) -> CommandOutcome:
        """A command applied: to one account, or (reset-session-keys) to a chunk of them."""
        bulk = accountid if isinstance(accountid, BulkChunk) else None
        return cls(
            command_id=command_id,
            command=command,
            status=OutcomeStatus.SUCCESS,
            appid=appid,
            accountid=None if bulk else accountid,
            bulk=bulk,
        )

    @classmethod
    def failure(
        cls,
        *,
        command_id: str,
        command: str,
        code: ExceptionCode,
        appid: str | None,
        accountid: str | None = None,
    ) -> CommandOutcome:
        return cls(
            command_id=command_id,
            command=command,
            status=OutcomeStatus.FAILURE,
            code=code,
            appid=appid,
            accountid=accountid,
        )
