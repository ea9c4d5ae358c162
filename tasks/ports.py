"""What the rules and the pipeline need from the world, as small interfaces.

The real parts satisfy them (worker/db/unit_of_work.py, worker/security/attempts.py; mypy checks
it where the bootstrap wires them); the unit ring's in-memory parts do too
(tests/support/in_memory.py), so the rules and the pipeline run there without a database or Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

from schemas import CommandOutcome, ResetAccountPassword, ResetSessionKey, ResetSessionKeys
from schemas.events import BulkChunk
from worker.db.models import Account, ResetCode
from worker.db.unit_of_work import RecordedOutcome
from worker.security.attempts import Reservation

if TYPE_CHECKING:
    from tasks.deps import RuleDeps

C = TypeVar("C", ResetSessionKey, ResetAccountPassword, ResetSessionKeys)
CommandModel = type[ResetSessionKey] | type[ResetAccountPassword] | type[ResetSessionKeys]


class AccountRows(Protocol):
    """What a handler reads and changes, inside the caller's transaction."""

    def account_by_id(self, accountid: str, appid: str) -> Account | None: ...

    def account_by_username_hash(self, username_hash: str, appid: str) -> Account | None: ...

    def reset_code(
        self,
        *,
        secret_code_hash: str,
        accountid: str,
        appid: str,
        created_after: datetime | None = None,
    ) -> ResetCode | None: ...

    def delete_reset_codes(self, *, accountid: str, appid: str) -> None: ...

    def live_accountids(self, *, appid: str, after: str | None, limit: int) -> list[str]:
        """Up to `limit` undeleted accounts of `appid` after `after`, in order, locked."""

    def end_sessions_of(self, keys: dict[str, str], *, appid: str, now: datetime) -> list[str]:
        """New session keys for the undeleted accounts of `keys` in `appid`; those changed."""

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once the transaction has committed; never if it rolls back or fails."""


class UnitOfWork(AccountRows, Protocol):
    """One command's transaction: it rolls back unless `commit` is called."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Raises sqlalchemy's IntegrityError when the outcome's key was recorded meanwhile."""

    def rollback(self) -> None: ...

    def recorded_outcome(self, *, scope: str, command_id: str) -> RecordedOutcome | None: ...

    def record_outcome(
        self, outcome: CommandOutcome, *, scope: str, fingerprint: str | None
    ) -> None: ...

    def count_dashboard_metric(
        self, *, appid: str, metricids: list[str], now: datetime
    ) -> None: ...


class UnitsOfWork(Protocol):
    """Where the pipeline's transactions come from: a new one per delivery."""

    def __call__(self) -> UnitOfWork: ...

    def mark_published(self, event_ids: list[str], published_at: datetime) -> None:
        """Outside any command's transaction: the events are out."""


class AttemptCounter(Protocol):
    """The guessing limits on reset codes, shared by every worker."""

    def reserve(
        self,
        *,
        appid: str,
        accountid: str,
        command_id: str,
        secret_code: str,
        source: str | None = None,
    ) -> Reservation: ...

    def succeeded(self, reservation: Reservation) -> None: ...


class EventPublisher(Protocol):
    """Where outcomes go once committed: the event stream."""

    def publish(self, outcome: CommandOutcome) -> str:
        """Consumers drop repeats by `event_id`: publishing twice is safe."""


# A handler applies one command's rules; it returns the affected accountid (reset-session-keys:
# what its chunk did) or raises CommandRejected. `RuleDeps` is covariant in its counter: any
# counter's deps will do.
Handler = Callable[[C, AccountRows, "RuleDeps[AttemptCounter]"], str | BulkChunk]
