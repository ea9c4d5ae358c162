"""The result event: one per command outcome, published on the events stream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.codes import ExceptionCode

SCHEMA_VERSION = 1
# The stream entry's one field, holding the event's JSON.
EVENT_FIELD = "event"


class OutcomeStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


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

    @classmethod
    def success(
        cls, *, command_id: str, command: str, appid: str, accountid: str
    ) -> CommandOutcome:
        return cls(
            command_id=command_id,
            command=command,
            status=OutcomeStatus.SUCCESS,
            appid=appid,
            accountid=accountid,
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
