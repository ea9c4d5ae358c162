"""What the rules need besides the database: hashing, the guessing limit, the code lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from worker.security.attempts import CodeAttempts
from worker.security.hashing import Hasher


@dataclass(frozen=True)
class RuleDeps:
    hasher: Hasher
    attempts: CodeAttempts
    # Reset codes older than this are not accepted; None: codes never expire.
    code_ttl: timedelta | None = None
