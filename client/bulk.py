"""Bulk revocation from the producer's side: ending the sessions of many accounts at once.

A listed run is sent as messages of at most MAX_BULK_ACCOUNTS accountids each, command_ids
`<run id>#0`, `#1`...; an every_account run is one message, under the run's id, which the worker
continues as `#1`, `#2`... Each message's result event names the accounts it reset
(`event["bulk"]`, docs/contract.md: bulk revocation), so following a run is reading its events.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from client.events import follow, read_outcome
from schemas import CommandOutcome, ResetSessionKeys
from schemas.commands import MAX_BULK_ACCOUNTS

COMMAND = ResetSessionKeys.name
# The JSON of a message's accountids: a thousand dashboard ids (`acct_` and 16 hex digits) take
# about 25 KB; a thousand of 64 characters would not fit MAX_MESSAGE_BYTES once base64-encoded.
CHUNK_BYTES = 40_000


@dataclass(frozen=True)
class BulkRun:
    """What was sent: the run's id, and its messages' command_ids (an every_account run: the
    first alone; the worker sends the rest)."""

    bulk_id: str
    command_ids: list[str]
    every_account: bool
    # How many distinct accounts were listed (None: every account of the appid).
    listed: int | None
    # Where the events stream stood before the run was sent.
    after: str = "0-0"


@dataclass
class BulkProgress:
    """A run's events as read so far."""

    reset: int = 0
    not_reset: list[str] = field(default_factory=list)
    failures: list[CommandOutcome] = field(default_factory=list)
    messages: set[str] = field(default_factory=set)
    done: bool = False


def chunk_payloads(
    accountids: Iterable[str], *, bulk_id: str, requested_by: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(command_id, kwargs) of each message of a listed run; an accountid listed twice is
    sent once."""
    unique = dict.fromkeys(accountid.strip() for accountid in accountids if accountid.strip())
    for number, chunk in enumerate(_chunks(unique)):
        payload: dict[str, Any] = {"accountids": chunk, "bulk_id": bulk_id, "chunk": number}
        if requested_by:
            payload["requested_by"] = requested_by
        yield f"{bulk_id}#{number}", payload


def _chunks(accountids: Iterable[str]) -> Iterator[list[str]]:
    """At most MAX_BULK_ACCOUNTS a chunk, and at most CHUNK_BYTES of their JSON, so that a
    message stays well under the worker's MAX_MESSAGE_BYTES (64 KiB) with long accountids."""
    chunk: list[str] = []
    size = 0
    for accountid in accountids:
        cost = len(json.dumps(accountid)) + 2
        if chunk and (len(chunk) == MAX_BULK_ACCOUNTS or size + cost > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(accountid)
        size += cost
    if chunk:
        yield chunk


def every_account_payload(*, requested_by: str | None) -> dict[str, Any]:
    return {"every_account": True, **({"requested_by": requested_by} if requested_by else {})}


def new_bulk_id() -> str:
    return f"bulk-{uuid.uuid4()}"


def follow_run(
    events: redis.Redis,
    stream: str,
    run: BulkRun,
    *,
    timeout_s: float,
    on_progress: Callable[[BulkProgress], None] | None = None,
) -> BulkProgress:
    """Read the run's events until it is over (every message answered; an every_account run's
    last chunk, or a refusal); TimeoutError, saying how far it got, after `timeout_s`."""
    progress = BulkProgress()
    for batch in follow(events, stream, after=run.after, deadline=time.monotonic() + timeout_s):
        for _entry_id, fields in batch:
            outcome = read_outcome(fields)
            if _of_run(outcome, run) and outcome.command_id not in progress.messages:
                _count(progress, outcome, run)
        if on_progress is not None:
            on_progress(progress)
        if progress.done:
            return progress
    raise TimeoutError(
        f"run {run.bulk_id} not over after {timeout_s}s: {progress.reset} accounts reset,"
        f" {len(progress.messages)} messages answered"
    )


def _of_run(outcome: CommandOutcome, run: BulkRun) -> bool:
    if outcome.command != COMMAND:
        return False
    if outcome.bulk is not None:
        return outcome.bulk.bulk_id == run.bulk_id
    return outcome.command_id == run.bulk_id or outcome.command_id.startswith(f"{run.bulk_id}#")


def _count(progress: BulkProgress, outcome: CommandOutcome, run: BulkRun) -> None:
    progress.messages.add(outcome.command_id)
    if outcome.bulk is None:
        progress.failures.append(outcome)
    else:
        progress.reset += len(outcome.bulk.accountids)
        progress.not_reset += outcome.bulk.not_reset
    if run.every_account:
        ended = outcome.bulk is None or outcome.bulk.done
        progress.done = progress.done or ended
    else:
        progress.done = progress.messages >= set(run.command_ids)
