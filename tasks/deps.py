"""What the rules need besides the database: hashing, the guessing limit, the code lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Generic

from typing_extensions import TypeVar

from schemas.commands import MAX_BULK_ACCOUNTS
from tasks.ports import AttemptCounter
from worker.security.attempts import CodeAttempts
from worker.security.hashing import Hasher

# The worker counts in Redis; the unit ring in memory. Covariant: a handler takes either.
Attempts = TypeVar("Attempts", bound=AttemptCounter, default=CodeAttempts, covariant=True)


@dataclass(frozen=True)
class RuleDeps(Generic[Attempts]):
    hasher: Hasher
    attempts: Attempts
    # Reset codes older than this are not accepted; None: codes never expire.
    code_ttl: timedelta | None = None
    # Accounts per transaction of an every_account reset-session-keys run.
    bulk_chunk: int = MAX_BULK_ACCOUNTS
