"""The wire contract: commands, result events and exception codes. Pure pydantic, no I/O."""

from schemas.codes import ExceptionCode
from schemas.commands import (
    COMMANDS,
    Command,
    CommandLimits,
    ResetAccountPassword,
    ResetSessionKey,
    ResetSessionKeys,
)
from schemas.events import SCHEMA_VERSION, CommandOutcome, OutcomeStatus

__all__ = [
    "COMMANDS",
    "SCHEMA_VERSION",
    "Command",
    "CommandLimits",
    "CommandOutcome",
    "ExceptionCode",
    "OutcomeStatus",
    "ResetAccountPassword",
    "ResetSessionKey",
    "ResetSessionKeys",
]
